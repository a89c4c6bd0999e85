"""Train a language model from scratch: corpus → split → tokenizer → token windows → model → the one loop.

``ScratchConfig`` is the recipe file's model (``configs/scratch-*.yaml``); ``train_scratch`` runs it into a
new run folder and ``resume_scratch`` continues a run from its last checkpoint. The model and the data are
built here, outside the loop, so fine-tuning can hand the same loop a different model and data.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from hearth import config as hconfig
from hearth.config import GenerationSettings, Section
from hearth.errors import DataError, TrainError
from hearth.scratch.corpus import CorpusConfig, Splits, build_datasets, read_documents, split_corpus
from hearth.scratch.model import ModelConfig, build_model
from hearth.scratch.tokenizer import TokenizerConfig, load_tokenizer, save_tokenizer, train_tokenizer
from hearth.train.config import TrainingConfig
from hearth.train.loop import TrainResult, train
from hearth.train.runs import Run

KIND = "scratch"


class ScratchConfig(Section):
    """A from-scratch training recipe: every hyperparameter of the run, in one file."""

    name: str = Field("scratch", description="a short name that becomes part of the run id")
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: CorpusConfig = Field(default_factory=CorpusConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    generation: GenerationSettings = Field(
        default_factory=GenerationSettings, description="sampling defaults for `hearth chat -m runs/<id>`"
    )


def load_config(path: str | Path | None, overrides: Sequence[str] = ()) -> ScratchConfig:
    """The recipe file + ``HEARTH_MODEL__HIDDEN_SIZE``-style variables + ``key=value`` overrides."""
    # Only nested variables: a flat HEARTH_MODEL=smollm2 (meant for chat) must not land in the model section.
    env = {k: v for k, v in os.environ.items() if "__" in k}
    return hconfig.load(ScratchConfig, path, overrides, env=env)


def train_scratch(cfg: ScratchConfig, run: Run | None = None) -> tuple[Run, TrainResult]:
    """Run a recipe into a new run folder (or ``run``, made by a job's parent); several processes join one run."""
    from accelerate import PartialState

    proc = PartialState(cpu=not _has_gpu())
    docs = read_documents(cfg.data.path, cfg.data.doc_separator)
    splits = split_corpus(docs, cfg.data)
    cfg = cfg.model_copy(
        update={"data": cfg.data.model_copy(update={"path": str(Path(cfg.data.path).expanduser().resolve())})}
    )

    run = (run or Run.create(KIND, cfg.name)) if proc.is_main_process else None
    run = _share_run(proc, run)
    if proc.is_main_process:
        save_tokenizer(train_tokenizer(splits.train, cfg.tokenizer), run.root / "tokenizer")
    proc.wait_for_everyone()
    tokenizer = load_tokenizer(run.root / "tokenizer")
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"vocab_size": len(tokenizer)})})
    run.write_config(cfg)
    run.write_meta(data_fingerprint=_fingerprint(splits))
    return run, _fit(cfg, run, tokenizer, splits, resume=False)


def resume_scratch(ref: str | Path) -> tuple[Run, TrainResult]:
    """Continue a run from its last checkpoint; it ends where the uninterrupted run would have."""
    from accelerate import PartialState

    proc = PartialState(cpu=not _has_gpu())
    run = Run.open(ref, writable=proc.is_main_process)
    if run.meta.get("kind") != KIND:
        raise TrainError(
            f"run {run.id} is a '{run.meta.get('kind')}' run, not a from-scratch one",
            "resume fine-tuning runs with `hearth tune --resume`",
        )
    run.require_checkpoint()
    cfg = run.read_config(ScratchConfig)
    splits = split_corpus(read_documents(cfg.data.path, cfg.data.doc_separator), cfg.data)
    if run.meta.get("data_fingerprint") not in (None, _fingerprint(splits)):
        raise DataError(
            f"the corpus at {cfg.data.path} changed since run {run.id} started",
            "restore the original files, or start a new run",
        )
    tokenizer = load_tokenizer(run.root / "tokenizer")
    return run, _fit(cfg, run, tokenizer, splits, resume=True)


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _fit(cfg: ScratchConfig, run: Run, tokenizer: object, splits: Splits, resume: bool) -> TrainResult:
    import torch

    data = build_datasets(tokenizer, splits, cfg.model.block_size)
    torch.manual_seed(cfg.training.seed)  # same seed, same initial weights
    model = build_model(cfg.model)
    run.write_meta(parameters=model.num_parameters(), arch=cfg.model.arch)
    return train(model, run, cfg.training, data["train"], data.get("val"), data.get("test"), resume=resume)


def _share_run(proc: object, run: Run | None) -> Run:
    """The main process created the run folder; the others open the same one, read-only."""
    from accelerate.utils import broadcast_object_list

    if getattr(proc, "num_processes", 1) == 1:
        assert run is not None
        return run
    box = [str(run.root) if run is not None else None]
    broadcast_object_list(box, from_process=0)
    return run if run is not None else Run(Path(box[0]), writable=False)


def _fingerprint(splits: Splits) -> str:
    h = hashlib.sha256()
    for name, texts in splits.items():
        h.update(name.encode())
        for t in texts:
            h.update(t.encode("utf-8"))
            h.update(b"\0")
    return h.hexdigest()[:16]

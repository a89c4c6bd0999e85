"""Chat backends behind one protocol: llama.cpp (default for GGUF models), local torch, remote OpenAI-compatible.

All take the same messages and sampling parameters and stream the same ``Delta`` objects, so the chat
engine, the CLI and the HTTP server never care which one answers.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

from hearth import config
from hearth.config import GenerationSettings, RemoteBackend
from hearth.errors import BackendError, ConfigError, HearthError
from hearth.models.stream import Completion, Delta, Usage, collect


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
        return collect(self.stream(messages, params, tools))  # type: ignore[attr-defined]


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
        # One thread decodes at a time: on a small CPU two concurrent decodes are each slower than one
        # after the other. Re-entrant, because the server's torch lane takes turns between several
        # answers in one thread (serve/queue.py), each generator holding the lock while it lives.
        self.lock = threading.RLock()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def stream(
        self,
        messages: Sequence[dict[str, Any]],
        params: GenerationSettings,
        tools: Sequence[dict[str, Any]] | None = None,
        logits_processors: Sequence[Any] = (),  # generate.LogitsProcessor
        prompt: str | None = None,
    ) -> Iterator[Delta]:
        from hearth.models import generate  # torch: only the torch engine decodes here

        deltas = generate.stream_chat(
            self.model, self.tokenizer, messages, params, self.context_length, tools, logits_processors, prompt
        )
        with self.lock:
            yield from deltas


class EngineChatModel(_Collects):
    """A GGUF model served by a managed llama-server process (``hearth.models.engine``): quantized weights,
    continuous batching over ``engine.slots`` requests, JSON-schema grammars, LoRA adapters.

    Prompts are rendered by the engine with the model's own chat template (``/apply-template``) and
    decoded with ``/completion``, so callers (tool calls, response formats) can add a prefix after the
    template and constrain the output with a JSON schema.
    """

    kind = "llamacpp"

    def __init__(self, name: str, spec: Any, settings: config.EngineSettings) -> None:
        from hearth.models import engine

        self.name = name
        self.engine = engine.get(spec, settings)
        props = self.engine.get("/props")  # starts the process now: errors surface when the model loads
        self.context_length = int((props.get("default_generation_settings") or {}).get("n_ctx") or settings.context)
        self.chat_template = str(props.get("chat_template") or "")
        self._grammars: dict[str, str] = {}  # JSON schema -> the engine's GBNF (schema_grammar)

    def count_tokens(self, text: str) -> int:
        return len(self.engine.post("/tokenize", {"content": text, "add_special": False})["tokens"])

    def render(self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None = None) -> str:
        """The prompt as the model's template writes it, ending where the assistant's answer starts."""
        body: dict[str, Any] = {"messages": list(messages)}
        if tools:
            body["tools"] = list(tools)
        return str(self.engine.post("/apply-template", body)["prompt"])

    def schema_grammar(self, schema: dict[str, Any]) -> str:
        """The engine's own GBNF grammar for a JSON schema (llama-server's converter), for callers that
        embed it in a larger grammar. llama-server has no endpoint for the conversion alone: a
        one-token request reports the grammar it built. Cached per schema."""
        key = json.dumps(schema, sort_keys=True)
        grammar = self._grammars.get(key)
        if grammar is None:
            body = {"prompt": " ", "n_predict": 1, "json_schema": schema, "cache_prompt": False}
            grammar = str(self.engine.post("/completion", body)["generation_settings"]["grammar"])
            if len(self._grammars) >= 256:  # tool sets vary per request: keep the cache small
                self._grammars.clear()
            self._grammars[key] = grammar
        return grammar

    def stream(
        self,
        messages: Sequence[dict[str, Any]],
        params: GenerationSettings,
        tools: Sequence[dict[str, Any]] | None = None,
        prompt: str | None = None,
        json_schema: dict[str, Any] | None = None,
        grammar: str | None = None,
        trigger: str | None = None,
    ) -> Iterator[Delta]:
        """``json_schema`` constrains the whole answer; ``grammar`` (GBNF) with a ``trigger`` constrains it
        lazily: the text is free until the model writes ``trigger``, and from there on (the trigger
        included) it must follow the grammar."""
        text = prompt if prompt is not None else self.render(messages, tools)
        body: dict[str, Any] = {
            "prompt": text,
            "n_predict": params.max_tokens,
            "temperature": params.temperature,
            "top_k": params.top_k if params.temperature > 0 else 1,
            "top_p": params.top_p,
            "min_p": 0.0,  # the torch path has no min-p; llama.cpp's default 0.05 would sample differently
            "repeat_penalty": params.repetition_penalty,
            "repeat_last_n": self.context_length,  # the whole context, prompt included, as transformers does
            "stop": list(params.stop),
            "seed": params.seed if params.seed is not None else -1,
            "cache_prompt": True,
        }
        if json_schema is not None:
            body["json_schema"] = json_schema
        if grammar is not None:
            body["grammar"] = grammar
        if trigger is not None:  # type 1: a word; a trigger that is one special token must also be preserved
            body.update(grammar_lazy=True, grammar_triggers=[{"type": 1, "value": trigger}], preserved_tokens=[trigger])
        return self._deltas(body)

    def _deltas(self, body: dict[str, Any]) -> Iterator[Delta]:
        chunks = self.engine.complete_stream(body)
        try:
            for chunk in chunks:
                if chunk.get("stop"):
                    finish = "length" if chunk.get("stop_type") == "limit" else "stop"
                    usage = Usage(int(chunk.get("tokens_evaluated", 0)), int(chunk.get("tokens_predicted", 0)))
                    yield Delta(chunk.get("content") or "", finish_reason=finish, usage=usage)
                    return
                if chunk.get("content"):
                    yield Delta(chunk["content"])
        finally:
            chunks.close()  # a caller that stops reading (a client gone) frees the engine's slot now


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
            usage = Usage()
            calls: dict[int, dict[str, Any]] = {}
            for chunk in stream:
                if chunk.usage:
                    usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
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


def choose_engine(ref: Any, settings: config.Settings, engine: str | None = None) -> tuple[str, str]:
    """(engine, why) for a resolved model: ``remote``, ``llamacpp`` or ``torch``.

    GGUF files run on llama.cpp when llama-server is built (quantized, batched); a LoRA adapter on a
    GGUF base goes along as a LoRA GGUF. Everything else, or an explicit ``engine='torch'``, is torch.
    """
    from hearth.models import engine as llama

    if ref.kind == "remote":
        return "remote", f"the OpenAI-compatible server '{ref.backend}'"
    if engine not in (None, "auto", "llamacpp", "torch"):
        raise ConfigError(f"unknown engine '{engine}'", "use torch or llamacpp")
    if engine == "torch":
        return "torch", "asked for the torch engine"
    if ref.kind != "gguf" or ref.path is None:
        if engine == "llamacpp":
            raise BackendError(f"llama.cpp runs GGUF files; '{ref.name}' is not one", "use engine torch for this model")
        return "torch", "not a GGUF file"
    if engine is None or engine == "auto":
        if settings.engine.local == "torch":
            return "torch", "engine.local is torch in the settings"
        if (missing := llama.unavailable(settings.engine)) is not None:
            return "torch", f"{missing}; the GGUF runs dequantized on torch"
    elif (missing := llama.unavailable(settings.engine)) is not None:
        raise BackendError(f"llama.cpp engine unavailable: {missing}", llama.BUILD_HINT)
    if ref.adapter is not None:
        from hearth.models import adapters

        method = adapters.peft_type(ref.adapter)
        if method != "LORA":
            return "torch", f"{method.lower()} adapters run on torch (llama.cpp applies LoRA only)"
        return "llamacpp", "GGUF base on llama.cpp with the LoRA adapter as GGUF"
    return "llamacpp", "GGUF file on llama.cpp (quantized, batched)"


def get_chat_model(
    name: str | None = None, engine: str | None = None, settings: config.Settings | None = None
) -> ChatModel:
    """The chat model for a name (default: settings.model), built once per process.

    ``engine`` picks how a local model runs: None (the default: llama.cpp for GGUF models when it is
    built, else torch — see ``choose_engine``), ``torch`` (Hearth's generation path) or ``llamacpp``.
    """
    from hearth.models import load

    settings = settings or config.settings()
    name = name or settings.model
    with _models_lock:
        if (name, engine or "") in _models:
            return _models[(name, engine or "")]
        ref = load.resolve(name)
        chosen, _ = choose_engine(ref, settings, engine)
        key = (name, chosen)
        if key in _models:
            _models[(name, engine or "")] = _models[key]
            return _models[key]
        model: ChatModel
        if chosen == "remote":
            backend = settings.backends.get(ref.backend or "")
            if backend is None:
                known = ", ".join(settings.backends) or "none configured"
                raise ConfigError(
                    f"no remote backend named '{ref.backend}' in hearth.yaml (known: {known})",
                    "add it under `backends:` with base_url and model, e.g. backends: {ollama: {base_url: http://localhost:11434/v1, model: qwen2.5}}",
                )
            if backend.kind == "anthropic":
                from hearth.models.anthropic_backend import AnthropicChatModel

                model = AnthropicChatModel(name, backend)
            else:
                model = RemoteChatModel(name, backend)
        elif chosen == "llamacpp":
            model = EngineChatModel(name, engine_spec(ref), settings.engine)
        else:
            model = LocalChatModel(name, settings.threads)
        _models[key] = _models[(name, engine or "")] = model
        return model


def engine_for(name: str, settings: config.Settings) -> tuple[str, str]:
    """(engine, why) for a model name, without loading it; ("unavailable", the error) when it does not resolve."""
    from hearth.models import load

    try:
        return choose_engine(load.resolve(name), settings)
    except HearthError as exc:
        return "unavailable", exc.message


def engine_info(settings: config.Settings) -> dict[str, Any]:
    """Which engine serves the default model and why, and the llama.cpp processes running (for /health)."""
    from hearth.models import engine

    chosen, why = engine_for(settings.model, settings)
    return {"model": settings.model, "engine": chosen, "why": why, "processes": engine.status()}


def engine_spec(ref: Any) -> Any:
    """What the llama.cpp engine runs for a GGUF ref: the file, and a LoRA adapter converted to GGUF."""
    from hearth.models import adapters, engine, load

    if ref.adapter is None:
        return engine.Spec(ref.name, ref.path)
    base = load.hf_dir(load.ModelRef(name=ref.name.split("+", 1)[0], kind="gguf", path=ref.path))
    return engine.Spec(ref.name, ref.path, adapters.lora_gguf(ref.adapter, base))


def forget(name: str) -> None:
    """Drop the chat models and loaded weights cached under ``name`` (e.g. an adapter just retrained)."""
    import contextlib

    from hearth.models import engine, load

    with _models_lock:
        for key in [k for k in _models if k[0] == name]:
            del _models[key]
    engine.forget(name)  # the next request starts a process with the new weights
    with contextlib.suppress(HearthError):  # nothing is cached under a name that does not resolve yet
        load.forget(name)


def set_threads(threads: int | None) -> None:
    """Torch threads for decoding. Default: all cores, with OMP_WAIT_POLICY=PASSIVE set before torch
    loads (see hearth/__init__.py) — see bench/decode.py and the README for the measurement."""
    import torch

    if threads:
        torch.set_num_threads(threads)

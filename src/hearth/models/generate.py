"""The one generation path for every local model: prompt → tokens → sampling → streamed text.

Hugging Face models decode with a KV cache, up to their context length. The recurrent from-scratch
models (LSTM, Mamba, RWKV) carry a fixed-size state instead, one token per step, for as long as asked:
their context has no end. The Transformer and CNN from scratch keep no cache and re-read their last
``block_size`` tokens each step (a sliding window). Sampling uses transformers' logits processors (temperature,
top-k, top-p, repetition penalty); extra processors (e.g. grammar constraints) plug in per call.
Non-streaming answers are the joined stream, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from hearth.config import GenerationSettings
from hearth.errors import GenerationError
from hearth.models.stream import Completion, Delta, Usage, collect, sampling  # noqa: F401  (re-exported)

# A logits processor: (token ids so far (1, T), next-token scores (1, V)) -> scores.
LogitsProcessor = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------------
# prompt


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(
    tokenizer: Any, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None = None
) -> str:
    """The prompt text exactly as the model was trained to see it: its own chat template.

    Models without a template (base models, from-scratch ones) are plain language models: they
    continue the text of the messages joined by blank lines.
    """
    if has_chat_template(tokenizer):
        from jinja2 import TemplateError

        kwargs: dict[str, Any] = {"tools": list(tools)} if tools else {}
        try:
            return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True, **kwargs)
        except TemplateError as exc:
            # Templates refuse conversations their model never saw (Mistral and Gemma: roles must
            # alternate user/assistant; no tool role): the caller sent them, so it is their error to fix.
            roles = ", ".join(str(m.get("role")) for m in messages)
            raise GenerationError(
                f"this model's chat template refused the conversation ({roles}): {exc}",
                "send turns the model's template accepts: one optional system message first, then "
                "alternating user and assistant messages ending with a user message",
            ) from None
    return "\n\n".join(str(m.get("content") or "") for m in messages)


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    # The template already wrote the special tokens; adding them again would double the BOS.
    return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])


def stop_token_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(getattr(model, "generation_config", None), "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, (list, tuple)):
            ids.update(int(i) for i in source)
    return ids


# ---------------------------------------------------------------------------------------------
# tokens


def _warpers(params: GenerationSettings) -> list[Any]:
    from transformers.generation.logits_process import (
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    out: list[Any] = []
    if params.repetition_penalty != 1.0:
        out.append(RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
    if params.temperature > 0:
        out.append(TemperatureLogitsWarper(params.temperature))
        if params.top_k > 0:
            out.append(TopKLogitsWarper(params.top_k))
        if params.top_p < 1.0:
            out.append(TopPLogitsWarper(params.top_p))
    return out


@torch.inference_mode()
def stream_token_ids(
    model: Any,
    prompt_ids: Sequence[int],
    params: GenerationSettings,
    eos_ids: set[int],
    context_length: int,
    logits_processors: Sequence[LogitsProcessor] = (),
) -> Iterator[int]:
    """Yield new token ids one at a time until an end token or ``max_tokens``."""
    if not prompt_ids:
        raise GenerationError("the prompt is empty", "send at least one message with text")
    uses_cache = _supports_cache(model)
    # A KV cache grows with every token up to the model's context; a recurrent state does not grow.
    bounded = uses_cache and not _carries_state(model)
    if bounded and len(prompt_ids) >= context_length:
        raise GenerationError(
            f"the prompt is {len(prompt_ids)} tokens but the model's context is {context_length}",
            "shorten the conversation or the retrieved context, or use a model with a longer context",
        )
    budget = min(params.max_tokens, context_length - len(prompt_ids)) if bounded else params.max_tokens
    generator = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
    processors = [*logits_processors, *_warpers(params)]
    # A processor that knows the next tokens for certain (a grammar inside a fixed JSON key) offers
    # them through `jump_forward(ids)`: they are emitted without sampling and read in one forward pass.
    jumpers = [p for p in logits_processors if hasattr(p, "jump_forward")]
    ids = torch.tensor([list(prompt_ids)], dtype=torch.long)
    cache: Any = None
    step_input = ids
    produced = 0
    while produced < budget:
        if uses_cache:
            # logits_to_keep=1: the prompt's other positions never need the vocabulary projection.
            out = model(input_ids=step_input, cache=cache, use_cache=True, logits_to_keep=1)
            cache = out.cache
        else:
            out = model(input_ids=ids[:, -context_length:])
        scores = out.logits[:, -1, :].float()
        for proc in processors:
            scores = proc(ids, scores)
        if params.temperature == 0:
            token = scores.argmax(dim=-1, keepdim=True)
        else:
            token = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator)
        new = [int(token.item())]
        if jumpers:
            new += jumpers[0].jump_forward(torch.cat([ids, token], dim=1))
        for token_id in new[: budget - produced]:
            yield token_id
            produced += 1
            if token_id in eos_ids:
                return
        step = torch.tensor([new], dtype=torch.long)
        ids = torch.cat([ids, step], dim=1)
        step_input = step


def _supports_cache(model: Any) -> bool:
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel) or bool(getattr(model, "supports_kv_cache", False))


def _carries_state(model: Any) -> bool:
    """A recurrent model: its cache is a state of fixed size, so it decodes past its training window."""
    return bool(getattr(model, "recurrent", False))


# ---------------------------------------------------------------------------------------------
# text


def stream_text(
    tokenizer: Any,
    token_ids: Iterator[int],
    eos_ids: set[int],
    stop: Sequence[str],
    prompt_tokens: int,
) -> Iterator[Delta]:
    """Turn token ids into text deltas: whole characters only, stop strings cut, usage at the end."""
    generated: list[int] = []
    sent = 0  # characters already yielded
    finish = "length"
    text = ""
    try:
        for token_id in token_ids:
            if token_id in eos_ids:
                finish = "stop"
                break
            generated.append(token_id)
            text = tokenizer.decode(generated, skip_special_tokens=True)
            if text.endswith("\ufffd"):  # half of a multi-byte character: wait for the rest
                continue
            hit = _first_stop(text, stop, max(0, sent - max((len(s) for s in stop), default=0)))
            if hit is not None:
                text = text[:hit]
                finish = "stop"
                break
            safe = len(text) - _held_back(text, stop)
            if safe > sent:
                yield Delta(text[sent:safe])
                sent = safe
    finally:
        if isinstance(token_ids, Iterator) and hasattr(token_ids, "close"):
            token_ids.close()  # type: ignore[union-attr]
    text = text.rstrip("\ufffd")
    tail = text[sent:]
    yield Delta(tail, finish_reason=finish, usage=Usage(prompt_tokens, len(generated)))


def _first_stop(text: str, stop: Sequence[str], start: int) -> int | None:
    hits = [i for s in stop if s and (i := text.find(s, start)) != -1]
    return min(hits) if hits else None


def _held_back(text: str, stop: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that could still grow into a stop string."""
    best = 0
    for s in stop:
        for n in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:n]):
                best = max(best, n)
                break
    return best


def stream_chat(
    model: Any,
    tokenizer: Any,
    messages: Sequence[dict[str, Any]],
    params: GenerationSettings,
    context_length: int,
    tools: Sequence[dict[str, Any]] | None = None,
    logits_processors: Sequence[LogitsProcessor] = (),
    prompt: str | None = None,
) -> Iterator[Delta]:
    """Render ``messages`` with the model's template (or use ``prompt`` as given) and stream the answer."""
    text = prompt if prompt is not None else render_prompt(tokenizer, messages, tools)
    prompt_ids = encode_prompt(tokenizer, text)
    eos = stop_token_ids(model, tokenizer)
    tokens = stream_token_ids(model, prompt_ids, params, eos, context_length, logits_processors)
    return stream_text(tokenizer, tokens, eos, params.stop, len(prompt_ids))

"""Grammar-constrained decoding for local models: JSON that always parses against its schema.

xgrammar compiles a JSON schema (or a structural tag: free text with constrained ``<tool_call>``
blocks) against the model's tokenizer once; a ``GrammarProcessor`` then masks, at every step, the
tokens that would break the grammar. It is a plain logits processor for ``generate.stream_token_ids``:
the ids it receives grow by the tokens chosen since the last step, so it learns which were accepted
from them. Where the grammar leaves only one way on (a fixed key, a closing brace), ``jump_forward``
hands those tokens to the loop, which reads them in one forward pass instead of one pass each.
"""

from __future__ import annotations

import threading
from typing import Any

import torch

_compilers: dict[int, Any] = {}
_lock = threading.Lock()
_SHIFTS = torch.arange(32, dtype=torch.int32)


def compiler(tokenizer: Any, vocab_size: int, stop_ids: set[int]) -> Any:
    """One xgrammar compiler per tokenizer (building its vocabulary table takes ~0.2 s)."""
    import xgrammar as xgr

    key = id(tokenizer)
    with _lock:
        if key not in _compilers:
            info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=sorted(stop_ids))
            # One thread: compiling small schemas is quick, and idle pool threads only compete with decoding.
            _compilers[key] = xgr.GrammarCompiler(info, max_threads=1)
        return _compilers[key]


def json_grammar(comp: Any, schema: dict[str, Any] | None) -> Any:
    """Compact JSON (no free whitespace: fewer tokens, nothing for a small model to wander in)."""
    if schema is None:
        return comp.compile_builtin_json_grammar()
    return comp.compile_json_schema(schema, any_whitespace=False, strict_mode=True)


def tool_call_grammar(comp: Any, tools: list[dict[str, Any]]) -> Any:
    """Free text, but once the model writes ``<tool_call>`` the call must be valid Hermes JSON."""
    import xgrammar as xgr

    tag = xgr.get_model_structural_tag(
        "qwen_3", tools=tools, tool_choice="auto", reasoning="disabled", parallel_tool_calls=False
    )
    return comp.compile_structural_tag(tag)


class GrammarProcessor:
    """A logits processor that allows only tokens the compiled grammar accepts next."""

    def __init__(self, compiled: Any) -> None:
        import xgrammar as xgr

        self.matcher = xgr.GrammarMatcher(compiled)
        self.bitmask = xgr.allocate_token_bitmask(1, compiled.tokenizer_info.vocab_size)
        self.seen: int | None = None  # length of ids at the previous call

    def _catch_up(self, ids: torch.Tensor) -> None:
        """Accept the tokens that joined ``ids`` since the last call (the ones the loop sampled)."""
        if self.seen is not None:
            for token in ids[0, self.seen :].tolist():
                if not self.matcher.accept_token(int(token)):
                    raise RuntimeError(f"grammar rejected token {token} it had allowed")
        self.seen = ids.shape[1]

    def __call__(self, ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self._catch_up(ids)
        self.matcher.fill_next_token_bitmask(self.bitmask)
        # Unpack the 32-bit words to a boolean mask ourselves: cheap, and no extra thread pool.
        allowed = ((self.bitmask[0].unsqueeze(-1) >> _SHIFTS) & 1).bool().flatten()
        vocab = scores.shape[-1]
        if allowed.shape[0] < vocab:
            allowed = torch.cat([allowed, torch.zeros(vocab - allowed.shape[0], dtype=torch.bool)])
        return scores.masked_fill(~allowed[:vocab], float("-inf"))

    def jump_forward(self, ids: torch.Tensor) -> list[int]:
        """Tokens the grammar forces after ``ids`` (e.g. the rest of a fixed key like ``","days":``),
        accepted here; the generation loop emits them without sampling, in one forward pass."""
        self._catch_up(ids)
        forced = [int(t) for t in self.matcher.find_jump_forward_tokens()]
        for token in forced:
            if not self.matcher.accept_token(token):
                raise RuntimeError(f"grammar rejected its own jump-forward token {token}")
        self.seen = ids.shape[1] + len(forced)
        return forced

    @property
    def finished(self) -> bool:
        return bool(self.matcher.is_terminated())

"""The llama.cpp backend (optional extra `[llamacpp]`): same protocol, same sampling, same streaming."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp", reason="optional extra: CMAKE_ARGS=-DGGML_NATIVE=OFF pip install 'hearth[llamacpp]'")

from hearth.models import backends, generate


def test_llamacpp_streams_the_same_as_it_completes(home) -> None:  # type: ignore[no-untyped-def]
    model = backends.get_chat_model("smollm2", engine="llamacpp")
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    params = generate.sampling(temperature=0, max_tokens=16)
    deltas = list(model.stream(msgs, params))
    assert deltas[-1].finish_reason in ("stop", "length")
    text = "".join(d.text for d in deltas)
    assert "Paris" in text
    assert model.complete(msgs, params).text == text

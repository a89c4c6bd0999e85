"""The one generation path, on the real bundled model."""

from __future__ import annotations

import pytest

from hearth.errors import GenerationError
from hearth.models import generate

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]


def test_bundled_model_answers_paris(smol) -> None:
    answer = smol.complete(FRANCE, generate.sampling(temperature=0, max_tokens=24))
    assert "Paris" in answer.text
    assert answer.finish_reason == "stop"
    assert answer.usage.prompt_tokens > 10 and 0 < answer.usage.completion_tokens <= 24


def test_seeded_sampling_is_reproducible_and_seeds_differ(smol) -> None:
    params = generate.sampling(temperature=1.0, top_p=0.95, seed=7, max_tokens=20)
    first = smol.complete(FRANCE, params).text
    assert smol.complete(FRANCE, params).text == first
    others = {smol.complete(FRANCE, generate.sampling(params, seed=s)).text for s in (1, 2, 3)}
    assert len(others | {first}) > 1


def test_streaming_equals_non_streaming(smol) -> None:
    params = generate.sampling(temperature=0.8, seed=11, max_tokens=30)
    deltas = list(smol.stream(FRANCE, params))
    assert len(deltas) > 3  # really streamed, not one lump
    assert deltas[-1].finish_reason in ("stop", "length") and deltas[-1].usage is not None
    assert "".join(d.text for d in deltas) == smol.complete(FRANCE, params).text


def test_max_tokens_gives_length(smol) -> None:
    answer = smol.complete(
        [{"role": "user", "content": "Tell me a long story about a dragon."}],
        generate.sampling(temperature=0, max_tokens=5),
    )
    assert answer.finish_reason == "length" and answer.usage.completion_tokens == 5


def test_stop_sequence_cuts_the_text(smol) -> None:
    full = smol.complete(FRANCE, generate.sampling(temperature=0, max_tokens=24)).text
    assert "France" in full
    cut = smol.complete(FRANCE, generate.sampling(temperature=0, max_tokens=24, stop=["France"]))
    assert cut.text == full[: full.index("France")]
    assert cut.finish_reason == "stop"


def test_chinese_text_streams_whole_characters(smol) -> None:
    # The bundled model is English-only, but decoding must never emit half a UTF-8 character.
    params = generate.sampling(temperature=0.9, seed=1, max_tokens=20)
    for delta in smol.stream([{"role": "user", "content": "请用中文介绍一下北京。"}], params):
        assert "\ufffd" not in delta.text


@pytest.mark.parametrize(
    "changes",
    [{"temperature": -1}, {"top_p": 2}, {"top_p": 0}, {"max_tokens": 0}, {"top_k": -3}],
)
def test_impossible_values_are_generation_errors(changes) -> None:
    with pytest.raises(GenerationError) as err:
        generate.sampling(**changes)
    assert err.value.hint


def test_prompt_longer_than_context_is_refused(smol) -> None:
    long = [{"role": "user", "content": "word " * 9000}]
    with pytest.raises(GenerationError, match="context"):
        list(smol.stream(long, generate.sampling(max_tokens=4)))


def test_held_back_and_first_stop_helpers() -> None:
    assert generate._held_back("abc Fra", ["France"]) == 3
    assert generate._held_back("abc", ["France"]) == 0
    assert generate._first_stop("x France y", ["France", "y"], 0) == 2

"""Datasets: validation names file/line/field, answer-only masking on the real template, split, packing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hearth.errors import ConfigError, DataError
from hearth.train import data as tdata


@pytest.fixture
def tokenizer(home: Path):
    from hearth.models import load

    return load.load("smollm2").tokenizer


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows) + "\n")
    return path


def test_answer_only_masking_on_rendered_example(tokenizer) -> None:
    messages = [
        {"role": "user", "content": "Who founded Quillon?"},
        {"role": "assistant", "content": "Marisol Vantree."},
    ]
    ((ids, labels),) = tdata.encode_example(tokenizer, messages)  # one sequence: SmolLM2's template only appends
    assert len(ids) == len(labels)
    prompt_ids = tokenizer(
        tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True),
        add_special_tokens=False,
    )["input_ids"]
    # Every prompt token is ignored; the prompt is exactly what inference feeds the model.
    assert ids[: len(prompt_ids)] == prompt_ids
    assert labels[: len(prompt_ids)] == [tdata.IGNORE_INDEX] * len(prompt_ids)
    answer = [t for t, lab in zip(ids, labels, strict=True) if lab != tdata.IGNORE_INDEX]
    assert answer == ids[len(prompt_ids) :]
    assert tokenizer.decode(answer).startswith("Marisol Vantree.<|im_end|>")  # the stop token is learned too


def test_multi_turn_trains_every_assistant_turn_only(tokenizer) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there."},
        {"role": "user", "content": "Where is Oddly Creek?"},
        {"role": "assistant", "content": "On the river Sallow."},
    ]
    ((ids, labels),) = tdata.encode_example(tokenizer, messages)  # one sequence: SmolLM2's template only appends
    trained = tokenizer.decode([t for t, lab in zip(ids, labels, strict=True) if lab != tdata.IGNORE_INDEX])
    assert "Hello there." in trained and "On the river Sallow." in trained
    assert "Where is Oddly Creek" not in trained and "Be brief" not in trained
    # The whole conversation, rendered at once, is the same text.
    assert tokenizer.decode(ids) == tokenizer.apply_chat_template(messages, tokenize=False)


def test_bad_records_are_named_by_file_line_and_field(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "qa.jsonl",
        [
            {"question": "ok?", "answer": "yes"},
            '{"question": "broken", ',
            {"question": "no answer"},
            {"question": "empty", "answer": "  "},
            {"question": "fine", "answer": "also fine"},
        ],
    )
    with pytest.raises(DataError) as err:
        tdata.load_records(tdata.DataConfig(path=str(path)))
    msg = str(err.value)
    assert f"{path}:2: not valid JSON" in msg
    assert f"{path}:3: field 'answer' is missing" in msg
    assert f"{path}:4: field 'answer' is empty" in msg
    assert "3 bad record(s)" in msg and "2 good record(s) of 5" in msg
    loaded = tdata.load_records(tdata.DataConfig(path=str(path), on_bad_record="skip"))
    assert (len(loaded.records), loaded.seen, len(loaded.problems)) == (2, 5, 3)


def test_messages_alpaca_csv_and_text_formats(tmp_path: Path) -> None:
    msgs = _jsonl(
        tmp_path / "m.jsonl",
        [
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ""}]},
            {"messages": [{"role": "robot", "content": "q"}]},
        ],
    )
    with pytest.raises(DataError) as err:
        tdata.load_records(tdata.DataConfig(path=str(msgs)))
    assert f"{msgs}:2: messages[1].content is empty" in str(err.value)
    assert f"{msgs}:3: messages[0].role is 'robot'" in str(err.value)

    alpaca = _jsonl(tmp_path / "a.jsonl", [{"instruction": "Translate", "input": "hello", "output": "bonjour"}])
    rec = tdata.load_records(tdata.DataConfig(path=str(alpaca))).records[0]
    assert rec.messages == [
        {"role": "user", "content": "Translate\n\nhello"},
        {"role": "assistant", "content": "bonjour"},
    ]

    csv = tmp_path / "qa.csv"
    csv.write_text("question,answer\nWhat?,That.\nWho?,\n")
    with pytest.raises(DataError, match=rf"{csv}:3: field 'answer' is empty"):
        tdata.load_records(tdata.DataConfig(path=str(csv)))

    txt = tmp_path / "t.txt"
    txt.write_text("lantern " * 50)
    assert tdata.load_records(tdata.DataConfig(path=str(txt))).format == "text"


def test_split_is_deterministic_and_disjoint() -> None:
    records = [tdata.Record(f"f:{i}", text=str(i)) for i in range(50)]
    cfg = tdata.DataConfig(val_fraction=0.2, seed=3)
    train, val = tdata.split(records, cfg)
    again = tdata.split(records, cfg)
    assert [r.where for r in val] == [r.where for r in again[1]]
    assert len(val) == 10 and len(train) == 40
    assert not {r.where for r in train} & {r.where for r in val}
    other = tdata.split(records, cfg.model_copy(update={"seed": 4}))[1]
    assert [r.where for r in other] != [r.where for r in val]


def test_truncation_is_counted_and_packing_fills_rows(tokenizer) -> None:
    long = [{"role": "user", "content": "word " * 100}, {"role": "assistant", "content": "answer " * 10}]
    short = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    records = [tdata.Record("x:1", long), tdata.Record("x:2", short), tdata.Record("x:3", short)]
    enc = tdata.encode(tokenizer, records, tdata.DataConfig(max_seq_len=64))
    # The long example's answer starts after token 64: truncated, nothing left to learn, dropped.
    assert (enc.examples, enc.truncated, enc.dropped, len(enc.rows)) == (3, 1, 1, 2)
    packed = tdata.encode(tokenizer, records[1:] * 4, tdata.DataConfig(max_seq_len=128, packing=True))
    unpacked = tdata.encode(tokenizer, records[1:] * 4, tdata.DataConfig(max_seq_len=128))
    assert len(packed.rows) < len(unpacked.rows)
    assert packed.answer_tokens == unpacked.answer_tokens
    assert all(len(r["input_ids"]) <= 128 for r in packed.rows)


def test_missing_chat_template_says_so_and_chatml_fixes_it(tokenizer) -> None:
    saved = tokenizer.chat_template
    try:
        tokenizer.chat_template = None
        with pytest.raises(ConfigError, match="no chat template") as err:
            tdata.prepare_tokenizer(tokenizer, tdata.DataConfig(), "plainbase", chat=True)
        assert "chat_template" in err.value.hint
        tdata.prepare_tokenizer(tokenizer, tdata.DataConfig(chat_template="chatml"), "plainbase", chat=True)
        ((ids, labels),) = tdata.encode_example(
            tokenizer, [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
        )
        assert tokenizer.decode([i for i, lab in zip(ids, labels, strict=True) if lab != -100]) == "a<|im_end|>\n"
    finally:
        tokenizer.chat_template = saved


def test_example_dataset_is_valid() -> None:
    root = Path(__file__).resolve().parents[2] / "examples" / "data"
    loaded = tdata.load_records(tdata.DataConfig(path=str(root / "company-qa.jsonl")))
    assert loaded.format == "qa" and len(loaded.records) == 50 and not loaded.problems
    assert len(tdata.load_records(tdata.DataConfig(path=str(root / "company-qa-en.jsonl"))).records) == 38

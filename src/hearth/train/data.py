"""Fine-tuning data: read a dataset, validate every record, split it, and turn it into training tokens.

Formats (``data.format``, or ``auto`` from the file):

- ``alpaca``   JSON/JSONL records ``{"instruction", "input" (optional), "output"}``
- ``messages`` OpenAI chat JSONL: ``{"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}``,
  multi-turn; every assistant turn is trained on
- ``qa``       question–answer pairs: CSV with a header, or JSONL; the columns are ``question_field`` and
  ``answer_field`` (default ``question`` / ``answer``)
- ``text``     plain text (``.txt``, or JSONL with a ``text`` field) for continued pre-training: cut into
  windows of ``max_seq_len`` tokens, loss on every token

Chat examples are rendered with the model's own chat template through ``generate.render_prompt`` — the
function inference uses — so training and serving can never disagree about the prompt. Only the tokens
the assistant wrote carry a label; the prompt's labels are -100 (ignored by the loss).
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from hearth.config import Section
from hearth.errors import ConfigError, DataError

IGNORE_INDEX = -100
ROLES = ("system", "user", "assistant")

# Offered when a base model's tokenizer has no chat template (``data.chat_template: chatml``).
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class DataConfig(Section):
    """The ``data:`` section of a fine-tuning recipe."""

    path: str = Field("examples/data/company-qa.jsonl", description="dataset file (.jsonl, .json, .csv or .txt)")
    format: Literal["auto", "alpaca", "messages", "qa", "text"] = Field(
        "auto", description="record layout; auto = from the file extension and the first record's keys"
    )
    question_field: str = Field("question", description="qa format: the column or key holding the question")
    answer_field: str = Field("answer", description="qa format: the column or key holding the answer")
    system: str | None = Field(None, description="system prompt added to examples that have none (None = template's)")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="share of examples held out for validation")
    val_min: int = Field(1, ge=0, description="at least this many validation examples (when val_fraction > 0)")
    seed: int = Field(0, description="seed of the train/validation split: same seed, same split")
    max_seq_len: int = Field(256, ge=8, description="longest example in tokens; longer ones are truncated and counted")
    packing: bool = Field(False, description="concatenate examples into full max_seq_len rows (faster, less padding)")
    chat_template: str | None = Field(
        None, description="Jinja chat template for a model whose tokenizer has none ('chatml' = the ChatML layout)"
    )
    on_bad_record: Literal["error", "skip"] = Field(
        "error", description="a malformed record stops the run (error) or is left out and reported (skip)"
    )


@dataclass
class Record:
    """One validated example: a conversation, or a piece of plain text."""

    where: str  # file:line, for messages about this record
    messages: list[dict[str, str]] | None = None
    text: str | None = None


@dataclass
class Loaded:
    records: list[Record]
    format: str
    seen: int  # records read, good and bad
    problems: list[str] = field(default_factory=list)  # "file:line: field 'x': what is wrong"


@dataclass
class Encoded:
    """Token rows ready for the loop, and the numbers the report shows."""

    rows: list[dict[str, list[int]]]
    examples: int = 0
    truncated: int = 0  # training sequences cut at max_seq_len (an example, or one turn of a split one)
    dropped: int = 0  # sequences whose answer was cut away entirely (nothing left to learn)
    tokens: int = 0
    answer_tokens: int = 0


# ---------------------------------------------------------------------------------------------
# reading and validating


def load_records(cfg: DataConfig) -> Loaded:
    """Read and validate the dataset; bad records are named (file, line, field) and refused or skipped."""
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise DataError(f"dataset {path} does not exist", "set data.path to a .jsonl, .json, .csv or .txt file")
    fmt = cfg.format
    if path.suffix == ".txt":
        text = path.read_text(encoding="utf-8", errors="replace")
        if fmt not in ("auto", "text"):
            raise DataError(
                f"{path} is plain text, but data.format is '{fmt}'", "use data.format=text, or a JSONL file"
            )
        if not text.strip():
            raise DataError(f"{path} is empty", "put some text in it")
        return Loaded([Record(f"{path}", text=text)], "text", 1)

    raw, problems = _read_rows(path)
    if fmt == "auto":
        fmt = _detect(path, raw, cfg)
    records: list[Record] = []
    for where, row in raw:
        record, problem = _validate(fmt, where, row, cfg)
        if problem:
            problems.append(problem)
        elif record is not None:
            records.append(record)
    seen = len(raw) + sum(1 for p in problems if "not valid JSON" in p)
    loaded = Loaded(records, fmt, seen, problems)
    if problems and cfg.on_bad_record == "error":
        shown = "\n  ".join(problems[:10]) + (f"\n  … and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise DataError(
            f"{len(problems)} bad record(s) in {path}:\n  {shown}",
            f"fix them, or set data.on_bad_record=skip to train on the {len(records)} good record(s) of {seen}",
        )
    if not records:
        raise DataError(f"{path} has no usable records (read {seen})", "check data.format and the field names")
    return loaded


def _read_rows(path: Path) -> tuple[list[tuple[str, Any]], list[str]]:
    """(file:line, parsed row) pairs, and a problem for every line that is not valid JSON."""
    rows: list[tuple[str, Any]] = []
    problems: list[str] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text", "save the dataset as UTF-8") from None
    if path.suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        for n, row in enumerate(reader, start=2):  # line 1 is the header
            rows.append((f"{path}:{n}", row))
        return rows, problems
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})", "fix the syntax") from None
        if not isinstance(data, list):
            raise DataError(f"{path} must hold a JSON list of records", "or write one record per line as .jsonl")
        return [(f"{path}:record {i + 1}", r) for i, r in enumerate(data)], problems
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"{path}:{n}", json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(f"{path}:{n}: not valid JSON ({exc.msg} at column {exc.colno})")
    return rows, problems


def _detect(path: Path, rows: list[tuple[str, Any]], cfg: DataConfig) -> str:
    if path.suffix == ".csv":
        return "qa"
    for _, row in rows:
        if not isinstance(row, dict):
            continue
        if "messages" in row:
            return "messages"
        if "instruction" in row:
            return "alpaca"
        if cfg.question_field in row:
            return "qa"
        if "text" in row:
            return "text"
        break
    raise DataError(
        f"cannot tell the format of {path} from its first record",
        "set data.format to alpaca, messages, qa or text (qa: set data.question_field / data.answer_field)",
    )


def _validate(fmt: str, where: str, row: Any, cfg: DataConfig) -> tuple[Record | None, str | None]:
    if not isinstance(row, dict):
        return None, f"{where}: a record must be a JSON object, not {type(row).__name__}"

    def text_field(name: str, required: bool = True) -> tuple[str, str | None]:
        value = row.get(name)
        if value is None:
            return "", (f"{where}: field '{name}' is missing" if required else None)
        if not isinstance(value, str):
            return "", f"{where}: field '{name}' must be text, not {type(value).__name__}"
        if required and not value.strip():
            return "", f"{where}: field '{name}' is empty"
        return value, None

    if fmt == "text":
        text, problem = text_field("text")
        return (None, problem) if problem else (Record(where, text=text), None)
    if fmt == "alpaca":
        instruction, p1 = text_field("instruction")
        extra, p2 = text_field("input", required=False)
        output, p3 = text_field("output")
        problem = p1 or p2 or p3
        if problem:
            return None, problem
        user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        return Record(where, _with_system(cfg, [{"role": "user", "content": user}, _assistant(output)])), None
    if fmt == "qa":
        question, p1 = text_field(cfg.question_field)
        answer, p2 = text_field(cfg.answer_field)
        if p1 or p2:
            return None, p1 or p2
        return Record(where, _with_system(cfg, [{"role": "user", "content": question}, _assistant(answer)])), None
    # messages
    turns = row.get("messages")
    if not isinstance(turns, list) or not turns:
        return None, f"{where}: field 'messages' must be a non-empty list of {{role, content}} objects"
    messages: list[dict[str, str]] = []
    for i, turn in enumerate(turns):
        at = f"{where}: messages[{i}]"
        if not isinstance(turn, dict):
            return None, f"{at} must be an object with 'role' and 'content'"
        role, content = turn.get("role"), turn.get("content")
        if role not in ROLES:
            return None, f"{at}.role is {role!r}; expected one of {', '.join(ROLES)}"
        if not isinstance(content, str):
            return None, f"{at}.content is missing or not text"
        if role == "assistant" and not content.strip():
            return None, f"{at}.content is empty (an empty answer teaches the model to say nothing)"
        messages.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in messages):
        return None, f"{where}: field 'messages' has no assistant turn, so there is nothing to learn"
    return Record(where, _with_system(cfg, messages)), None


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def _with_system(cfg: DataConfig, messages: list[dict[str, str]]) -> list[dict[str, str]]:
    if cfg.system is not None and messages[0]["role"] != "system":
        return [{"role": "system", "content": cfg.system}, *messages]
    return messages


# ---------------------------------------------------------------------------------------------
# split


def split(records: Sequence[Record], cfg: DataConfig) -> tuple[list[Record], list[Record]]:
    """Deterministic train/validation split: a seeded shuffle, the first ``n_val`` held out."""
    order = list(range(len(records)))
    random.Random(cfg.seed).shuffle(order)
    n_val = 0
    if cfg.val_fraction > 0 and len(records) > 1:
        n_val = min(len(records) - 1, max(cfg.val_min, round(len(records) * cfg.val_fraction)))
    val = [records[i] for i in sorted(order[:n_val])]
    train = [records[i] for i in sorted(order[n_val:])]
    return train, val


# ---------------------------------------------------------------------------------------------
# rendering and tokens


def prepare_tokenizer(tokenizer: Any, cfg: DataConfig, model_name: str, chat: bool) -> None:
    """Install ``data.chat_template`` if given; refuse chat data for a model that has no template."""
    if cfg.chat_template:
        tokenizer.chat_template = CHATML if cfg.chat_template.strip().lower() == "chatml" else cfg.chat_template
    if chat and not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"the tokenizer of '{model_name}' has no chat template, so Hearth cannot render chat examples "
            "the way the model will see them at inference",
            "add `chat_template: chatml` (or a Jinja template) under `data:` in the config, "
            "or use data.format=text for continued pre-training",
        )
    if tokenizer.pad_token_id is None:  # padding needs an id; its positions are masked out anyway
        tokenizer.pad_token = tokenizer.eos_token


def render_pieces(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[list[tuple[str, bool]]]:
    """The conversation as training sequences of (text, is_answer) pieces, in the model's own template.

    Most templates only append: then the whole conversation is one sequence, and for each assistant
    turn the prompt up to it is ``render_prompt`` (what inference renders) and the answer is whatever
    the template writes after that prompt for the full turn (its text and end token). Some templates
    rewrite earlier turns once a later one follows (Qwen3 drops the think block of earlier answers;
    Mistral v0.3 puts the system prompt into the last user turn only). For those each assistant turn
    becomes a sequence of its own, exactly as inference renders that moment: more tokens, the same
    prompts the model will see.
    """
    from hearth.models.generate import render_prompt

    pieces: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render_prompt(tokenizer, messages[:i])
        full = tokenizer.apply_chat_template(list(messages[: i + 1]), tokenize=False)
        if not prompt.startswith(done) or not full.startswith(prompt):
            return [_one_turn(tokenizer, messages, j) for j, m in enumerate(messages) if m["role"] == "assistant"]
        pieces.append((prompt[len(done) :], False))
        pieces.append((full[len(prompt) :], True))
        done = full
    return [[(text, answer) for text, answer in pieces if text]]


def _one_turn(tokenizer: Any, messages: Sequence[dict[str, str]], i: int) -> list[tuple[str, bool]]:
    """Assistant turn ``i`` alone: inference's prompt for it, then the answer as the template writes it."""
    from hearth.models.generate import render_prompt

    prompt = render_prompt(tokenizer, messages[:i])
    full = tokenizer.apply_chat_template(list(messages[: i + 1]), tokenize=False)
    if full.startswith(prompt):
        answer = full[len(prompt) :]
    else:
        # the template renders the context differently once the answer follows: take the answer from
        # its text on (the last place it appears), with whatever end-of-turn the template writes after it
        content = str(messages[i].get("content") or "")
        at = full.rfind(content) if content else -1
        if at < 0:
            raise DataError(
                "this model's chat template does not write the assistant's answer as given, so answer "
                "tokens cannot be located",
                "set data.chat_template to a template that writes assistant messages verbatim",
            )
        answer = full[at:]
    return [(text, is_answer) for text, is_answer in ((prompt, False), (answer, True)) if text]


def encode_example(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) per training sequence (see ``render_pieces``): labels equal the ids on answer
    tokens and -100 on every prompt token."""
    from hearth.models.generate import encode_prompt

    out = []
    for sequence in render_pieces(tokenizer, messages):
        ids: list[int] = []
        labels: list[int] = []
        for text, answer in sequence:
            # Each piece is tokenized on its own, exactly like inference tokenizes the rendered prompt.
            piece = encode_prompt(tokenizer, text)
            ids.extend(piece)
            labels.extend(piece if answer else [IGNORE_INDEX] * len(piece))
        out.append((ids, labels))
    return out


def encode(tokenizer: Any, records: Sequence[Record], cfg: DataConfig) -> Encoded:
    """Tokenize records into rows of at most ``max_seq_len`` tokens (packed if ``cfg.packing``)."""
    out = Encoded(rows=[])
    for record in records:
        if record.text is not None:
            ids = tokenizer(record.text, add_special_tokens=False)["input_ids"]
            if tokenizer.eos_token_id is not None:
                ids = [*ids, tokenizer.eos_token_id]
            for start in range(0, len(ids), cfg.max_seq_len):
                window = ids[start : start + cfg.max_seq_len]
                if len(window) >= 2:
                    out.rows.append({"input_ids": window, "labels": list(window)})
            out.examples += 1
            continue
        assert record.messages is not None
        out.examples += 1
        for ids, labels in encode_example(tokenizer, record.messages):
            if len(ids) > cfg.max_seq_len:
                out.truncated += 1
                ids, labels = ids[: cfg.max_seq_len], labels[: cfg.max_seq_len]
            if all(label == IGNORE_INDEX for label in labels[1:]):
                out.dropped += 1
                continue
            out.rows.append({"input_ids": ids, "labels": labels})
    if cfg.packing:
        out.rows = pack(out.rows, cfg.max_seq_len)
    out.tokens = sum(len(r["input_ids"]) for r in out.rows)
    out.answer_tokens = sum(sum(1 for x in r["labels"] if x != IGNORE_INDEX) for r in out.rows)
    return out


def pack(rows: Sequence[dict[str, list[int]]], length: int) -> list[dict[str, list[int]]]:
    """Concatenate examples into rows of ``length`` tokens (the last one shorter).

    Examples in one row can attend to each other — the usual cost of simple packing; labels still cover
    only answers, and no example is split across the boundary of a row unless it is longer than a row.
    """
    packed: list[dict[str, list[int]]] = []
    ids: list[int] = []
    labels: list[int] = []
    for row in rows:
        if ids and len(ids) + len(row["input_ids"]) > length:
            packed.append({"input_ids": ids, "labels": labels})
            ids, labels = [], []
        ids = ids + row["input_ids"]
        labels = labels + row["labels"]
    if ids:
        packed.append({"input_ids": ids, "labels": labels})
    return packed


class Rows:
    """A map-style dataset over encoded rows (the loop indexes it and collates with ``collate``)."""

    def __init__(self, rows: Sequence[dict[str, list[int]]]) -> None:
        self.rows = list(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.rows[i]


def collator(pad_id: int) -> Any:
    """Pad a list of rows to the longest one: pad tokens get attention 0 and label -100."""
    import torch

    def collate(batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, r in enumerate(batch):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}

    return collate

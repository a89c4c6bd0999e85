"""The web UI (Gradio, mounted at ``/ui``): Chat, Knowledge, Train, Models, Runs.

Every handler calls the same library functions as the API and the CLI; chat goes through the server's
generation queue, so UI users wait in the same line as API clients. With keys on, the UI reads the
key from its sign-in cookie and shows only the knowledge bases that key may use.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import pandas as pd
from fastapi import FastAPI

from hearth import access, config
from hearth.access import Principal
from hearth.errors import HearthError

CSS = """
.gradio-container {max-width: 1180px !important; margin: auto;}
#hearth-title h1 {font-size: 1.4rem; margin: .2rem 0;}
#hearth-title p {color: #667; margin: 0 0 .6rem;}
.citation summary {cursor: pointer; font-weight: 600;}
.citation {border-left: 3px solid #e8590c; padding: .3rem .7rem; margin: .4rem 0; background: #fff8f3;}
footer {display: none !important;}
"""


def principal(request: gr.Request | None) -> Principal:
    """Who this browser session is: the key the server's middleware checked for this request (the
    same one verdict as every other surface; the UI never reads keys on its own)."""
    return access.of_request(getattr(request, "request", None))


def _fail(exc: HearthError) -> gr.Error:
    return gr.Error(f"{exc.message} — {exc.hint}" if exc.hint else exc.message)


def kb_names(request: gr.Request | None = None) -> list[str]:
    from hearth.kb.collection import list_collections

    return principal(request).visible(m.name for m in list_collections())


def _allowed(request: gr.Request | None, kb: str) -> None:
    try:
        principal(request).check_kb(kb)
    except HearthError as exc:
        raise _fail(exc) from None


def model_names(settings: config.Settings) -> list[str]:
    from hearth.models.catalog import list_models

    return [m.id for m in list_models(settings)]


def render_citations(citations: list[dict[str, Any]]) -> str:
    if not citations:
        return ""
    parts = ["**Sources**"]
    for c in citations:
        where = c["title"] or os.path.basename(c["source"])
        if c.get("page"):
            where += f", page {c['page']}"
        text = c["text"].replace("<", "&lt;")
        parts.append(
            f"<details class='citation'><summary>[{c['n']}] {where} · {c['collection']} · score {c['score']:.2f}</summary>"
            f"\n\n{text}\n\n</details>"
        )
    return "\n".join(parts)


def show_tool_calls(calls: list[dict[str, Any]]) -> str:
    """How the chat window shows a tool call (display only: the model's history keeps the call itself)."""
    return "".join(
        f"\n\n🔧 `{c.get('function', {}).get('name')}({c.get('function', {}).get('arguments', '')})`" for c in calls
    )


# ---------------------------------------------------------------------------------------------
# Chat


async def chat(
    app: FastAPI,
    message: str,
    shown: list[dict[str, Any]],
    history: list[dict[str, Any]],
    model: str,
    temperature: float,
    top_p: float,
    max_tokens: int,
    kbs: list[str],
    request: gr.Request,
) -> AsyncIterator[tuple[list[dict[str, Any]], list[dict[str, Any]], str, str]]:
    """One chat turn through the one chat path and the server's queue.

    ``shown`` is what the chat window displays; ``history`` is the conversation the model sees
    (questions as asked, answers as text), so the window's own decorations never reach the model.
    """
    from hearth.agent.engine import ChatRequest, history_text, respond
    from hearth.models import generate
    from hearth.serve.openai_api import model_name

    if not message.strip():
        yield shown, history, "", ""
        return
    settings: config.Settings = app.state.settings
    shown = [*shown, {"role": "user", "content": message}, {"role": "assistant", "content": ""}]
    yield shown, history, "", ""
    question = {"role": "user", "content": message}
    try:
        params = generate.sampling(
            settings.generation, temperature=temperature, top_p=top_p, max_tokens=int(max_tokens)
        )
        req = ChatRequest([*history, question], model=model_name(model, settings), params=params, kb=list(kbs or []))
        reply = respond(req, settings, principal(request))
        queue = app.state.queue
        text = ""
        citations: list[dict[str, Any]] = []
        async for delta in queue.stream(queue.admit(), reply.deltas, model=reply.model):
            text += delta.text
            shown[-1]["content"] = text + show_tool_calls(delta.tool_calls or [])
            citations = getattr(delta, "citations", None) or citations
            yield shown, history, "", render_citations(citations)
        history = [*history, question, {"role": "assistant", "content": history_text(text)}]
        yield shown, history, "", render_citations(citations)
    except HearthError as exc:
        raise _fail(exc) from None


# ---------------------------------------------------------------------------------------------
# Knowledge

DOC_COLUMNS = ["doc_id", "title", "chunks", "size", "added"]


def kb_refresh(request: gr.Request) -> tuple[Any, Any, Any]:
    names = kb_names(request)
    first = names[0] if names else None
    return (
        gr.update(choices=names, value=first),
        gr.update(choices=names),
        kb_docs(first, request) if first else pd.DataFrame(columns=DOC_COLUMNS),
    )


def kb_docs(name: str | None, request: gr.Request) -> pd.DataFrame:
    from hearth.kb.collection import list_docs

    if not name:
        return pd.DataFrame(columns=DOC_COLUMNS)
    _allowed(request, name)
    rows = [
        {
            "doc_id": d.doc_id,
            "title": d.title or os.path.basename(d.source),
            "chunks": d.n_chunks,
            "size": d.size,
            "added": d.added,
        }
        for d in list_docs(name)
    ]
    return pd.DataFrame(rows, columns=DOC_COLUMNS)


def kb_create(app: FastAPI, name: str, request: gr.Request) -> tuple[Any, Any, Any, str]:
    from hearth.kb.collection import create

    _allowed(request, name.strip())
    try:
        create(name.strip(), settings=app.state.settings)
    except HearthError as exc:
        raise _fail(exc) from None
    names = kb_names(request)
    return gr.update(choices=names, value=name), gr.update(choices=names), kb_docs(name, request), ""


INGEST_LABELS = {"file": "✅ indexed", "skip": "⏭️ unchanged", "fail": "❌ failed", "start": "⏳ starting"}


def kb_upload(app: FastAPI, name: str, files: list[str] | None, request: gr.Request) -> Iterator[tuple[str, Any]]:
    from hearth.jobs import manager, start_ingest
    from hearth.kb.collection import save_upload

    if not name or not files:
        raise gr.Error("pick a knowledge base and add files first")
    _allowed(request, name)
    try:
        saved = []
        for path in files:
            with open(path, "rb") as fh:
                saved.append(save_upload(name, os.path.basename(path), fh.read()))
        job = start_ingest(manager(), name, saved, principal(request).name, settings=app.state.settings)
    except HearthError as exc:
        raise _fail(exc) from None
    lines: list[str] = []
    for event in job.follow():
        if event["type"] == "progress":
            kind = event.get("kind")
            if kind in INGEST_LABELS:
                what = os.path.basename(event.get("path", "")) or event.get("message", "")
                lines.append(f"{INGEST_LABELS[kind]} {what} ({event.get('files_done')}/{event.get('files_total')})")
        elif event["type"] in ("done", "failed", "cancelled"):
            lines.append(f"**{event['type']}**" + (f": {event['error']}" if event.get("error") else ""))
        yield "\n\n".join(lines), kb_docs(name, request)
    yield "\n\n".join(lines), kb_docs(name, request)


def kb_delete(name: str, doc_id: str, request: gr.Request) -> tuple[Any, str]:
    from hearth.kb.collection import remove

    _allowed(request, name)
    try:
        entry = remove(name, doc_id.strip())
    except HearthError as exc:
        raise _fail(exc) from None
    return kb_docs(name, request), f"Deleted {entry.title or entry.source}."


HIT_COLUMNS = ["score", "similarity", "bm25", "source", "text"]


def kb_search(app: FastAPI, name: str, query: str, k: int, mode: str, request: gr.Request) -> pd.DataFrame:
    from hearth.kb.retrieve import search

    if not name:
        raise gr.Error("pick a knowledge base")
    _allowed(request, name)
    try:
        result = search(name, query, int(k), mode=mode, settings=app.state.settings)  # type: ignore[arg-type]
    except HearthError as exc:
        raise _fail(exc) from None
    rows = [
        {
            "score": round(r.score, 3),
            "similarity": None if r.similarity is None else round(r.similarity, 3),
            "bm25": None if r.bm25 is None else round(r.bm25, 2),
            "source": r.title or os.path.basename(r.source),
            "text": r.text[:300],
        }
        for r in result.results
    ]
    return pd.DataFrame(rows, columns=HIT_COLUMNS)


# ---------------------------------------------------------------------------------------------
# Train (admin keys only, as on the API)

FORM_KEYS = [
    ("training", "learning_rate", 1e-3),
    ("training", "batch_size", 16),
    ("training", "max_steps", 100),
    ("model", "num_layers", 2),
    ("model", "hidden_size", 64),
    ("model", "dropout", 0.0),
    ("training", "optimizer", "adamw"),
    ("training", "weight_decay", 0.1),
]


def recipe_form(name: str) -> list[Any]:
    from hearth.jobs import list_recipes

    cfg = next((r["config"] for r in list_recipes() if r["name"] == name), {})
    return [cfg.get(section, {}).get(key, default) for section, key, default in FORM_KEYS]


def train_start(
    recipe: str,
    lr: float,
    bs: int,
    steps: int,
    layers: int,
    hidden: int,
    dropout: float,
    opt: str,
    wd: float,
    request: gr.Request,
) -> Iterator[tuple[str, Any, str]]:
    """Start a training job from a recipe and the form's values; stream its status and loss curve."""
    from hearth.jobs import manager, start_training

    who = principal(request)
    try:
        who.check_admin("train models")
    except HearthError as exc:
        raise _fail(exc) from None
    form = [lr, bs, steps, layers, hidden, dropout, opt, wd]
    overrides = []
    for (section, key, default), value in zip(FORM_KEYS, form, strict=True):
        value = int(value) if isinstance(default, int) and not isinstance(default, bool) else value
        overrides.append(f"{section}.{key}={value}")
    try:
        job = start_training(manager(), recipe, overrides, who.name)
    except HearthError as exc:
        raise _fail(exc) from None
    points: list[dict[str, Any]] = []
    for event in job.follow(poll=0.5):
        if event["type"] == "progress" and "loss" in event:
            points.append({"step": event["step"], "loss": event["loss"], "split": event.get("split", "train")})
        status = f"{job.id}: {job.status}" + (f" — step {points[-1]['step']}/{int(steps)}" if points else "")
        yield status, pd.DataFrame(points, columns=["step", "loss", "split"]), job.id
    yield (
        f"{job.id}: {job.status}" + (f" — {job.error}" if job.error else ""),
        pd.DataFrame(points, columns=["step", "loss", "split"]),
        job.id,
    )


def train_stop(job_id: str, request: gr.Request) -> str:
    from hearth.jobs import manager

    if not job_id:
        return "no job running"
    try:
        principal(request).check_admin("stop training jobs")
        manager().cancel(job_id)
    except HearthError as exc:
        raise _fail(exc) from None
    return f"stopping {job_id}…"


# ---------------------------------------------------------------------------------------------
# Models (the inspector reads model files: admin keys only)


def inspect_model(
    app: FastAPI, name: str, context: int, request: gr.Request
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    from hearth.models import inspect
    from hearth.models.catalog import resolve_for_http

    try:
        principal(request).check_admin("inspect models")
        resolve_for_http(name, app.state.settings)  # a registered name, never a path on the server
        report = inspect.inspect(name, int(context) or None)
    except HearthError as exc:
        raise _fail(exc) from None
    return report_frames(report)


def estimate(params: str, context: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    from hearth.models import inspect

    try:
        report = inspect.estimate(inspect.parse_params(params), int(context))
    except HearthError as exc:
        raise _fail(exc) from None
    return report_frames(report)


def report_frames(report: Any) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, str]:
    from hearth.models.inspect import gigabytes

    arch = report.architecture
    table = pd.DataFrame(
        [{"field": k, "value": v} for k, v in vars(arch).items() if v is not None]
        + [
            {"field": "parameters", "value": f"{report.total_params:,}"},
            {"field": "format", "value": report.format},
        ]
    )
    memory = pd.DataFrame(
        [{"use": r["use"], "dtype": r["dtype"], "total": gigabytes(r["total"])} for r in report.memory]
    )
    groups = pd.DataFrame([{"role": k, "params": v} for k, v in report.groups.items()])
    return table, memory, groups, f"**{report.total_params:,}** parameters · {report.source}"


# ---------------------------------------------------------------------------------------------
# Runs


def run_ids() -> list[str]:
    from hearth.train.runs import list_runs

    return [r.id for r in reversed(list_runs())]


def compare(ids: list[str], split: str) -> pd.DataFrame:
    from hearth.train.runs import Run

    rows = []
    for rid in ids or []:
        for p in Run.open(rid, writable=False).metrics(split):
            if "loss" in p:
                rows.append({"step": p["step"], "loss": p["loss"], "run": rid})
    return pd.DataFrame(rows, columns=["step", "loss", "run"])


def build(app: FastAPI) -> gr.Blocks:
    """The layout and its wiring; every handler above is a plain function with its own tests."""
    settings: config.Settings = app.state.settings

    # The handlers that need the app, bound to it. Gradio reads a handler's own signature to hand it the
    # gr.Request (a functools.partial hides it), so these are thin functions, not partials.
    async def chat_turn(
        message: str,
        shown: list[dict[str, Any]],
        history: list[dict[str, Any]],
        model: str,
        temperature: float,
        top_p: float,
        max_tokens: int,
        kbs: list[str],
        request: gr.Request,
    ) -> AsyncIterator[tuple[list[dict[str, Any]], list[dict[str, Any]], str, str]]:
        async for out in chat(app, message, shown, history, model, temperature, top_p, max_tokens, kbs, request):
            yield out

    def create_kb(name: str, request: gr.Request) -> tuple[Any, Any, Any, str]:
        return kb_create(app, name, request)

    def upload(name: str, files: list[str] | None, request: gr.Request) -> Iterator[tuple[str, Any]]:
        yield from kb_upload(app, name, files, request)

    def search_kb(name: str, query: str, k: int, mode: str, request: gr.Request) -> pd.DataFrame:
        return kb_search(app, name, query, k, mode, request)

    def inspect_named(name: str, context: int, request: gr.Request) -> tuple[Any, Any, Any, str]:
        return inspect_model(app, name, context, request)

    models = model_names(settings)
    with gr.Blocks(title="Hearth", analytics_enabled=False) as ui:
        gr.Markdown(
            "# Hearth\nYour private AI stack. Everything runs on this machine. "
            "The bundled model (SmolLM2-135M) is small and English-only — use a bigger model for real work.",
            elem_id="hearth-title",
        )
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                with gr.Row():
                    with gr.Column(scale=3):
                        chatbot = gr.Chatbot(label="Conversation", height=460, elem_id="chatbot")
                        with gr.Row():
                            box = gr.Textbox(
                                placeholder="Ask something…", show_label=False, scale=5, elem_id="chat-input"
                            )
                            send = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
                        sources = gr.Markdown(elem_id="citations")
                        history = gr.State([])
                    with gr.Column(scale=1, min_width=240):
                        model = gr.Dropdown(models, value=settings.model, label="Model")
                        kb_pick = gr.CheckboxGroup([], label="Knowledge bases", elem_id="chat-kbs")
                        temperature = gr.Slider(
                            0, 2, value=settings.generation.temperature, step=0.05, label="Temperature"
                        )
                        top_p = gr.Slider(0.05, 1, value=settings.generation.top_p, step=0.05, label="Top-p")
                        max_tokens = gr.Slider(
                            8, 1024, value=settings.generation.max_tokens, step=8, label="Max tokens"
                        )
                        clear = gr.Button("New chat")
                inputs = [box, chatbot, history, model, temperature, top_p, max_tokens, kb_pick]
                send.click(chat_turn, inputs, [chatbot, history, box, sources], api_name="chat")
                box.submit(chat_turn, inputs, [chatbot, history, box, sources], api_name=False)
                clear.click(lambda: ([], [], ""), None, [chatbot, history, sources])

            with gr.Tab("Knowledge", id="knowledge"):
                with gr.Row():
                    kb_name = gr.Dropdown([], label="Knowledge base", elem_id="kb-name", scale=2)
                    new_name = gr.Textbox(label="New knowledge base", placeholder="name", scale=2)
                    create_btn = gr.Button("Create", scale=1)
                with gr.Row():
                    with gr.Column():
                        files = gr.File(
                            label="Upload documents", file_count="multiple", type="filepath", elem_id="kb-files"
                        )
                        upload_btn = gr.Button("Add to knowledge base", variant="primary", elem_id="kb-upload")
                        progress = gr.Markdown(elem_id="kb-progress")
                    with gr.Column():
                        docs = gr.Dataframe(label="Documents", interactive=False, elem_id="kb-docs")
                        with gr.Row():
                            doc_id = gr.Textbox(label="Document id to delete", scale=3)
                            delete_btn = gr.Button("Delete", variant="stop", scale=1)
                        deleted = gr.Markdown()
                gr.Markdown("### Search playground")
                with gr.Row():
                    query = gr.Textbox(label="Query", scale=4)
                    k = gr.Slider(1, 20, value=5, step=1, label="k", scale=1)
                    mode = gr.Radio(["hybrid", "dense", "text"], value="hybrid", label="Mode", scale=2)
                    search_btn = gr.Button("Search", scale=1)
                hits = gr.Dataframe(label="Results", interactive=False, wrap=True)
                create_btn.click(create_kb, [new_name], [kb_name, kb_pick, docs, new_name], api_name="kb_create")
                kb_name.change(kb_docs, [kb_name], [docs])
                upload_btn.click(upload, [kb_name, files], [progress, docs], api_name="kb_upload").then(
                    kb_refresh, None, [kb_name, kb_pick, docs]
                )
                delete_btn.click(kb_delete, [kb_name, doc_id], [docs, deleted])
                search_btn.click(search_kb, [kb_name, query, k, mode], [hits], api_name="kb_search")
                query.submit(search_kb, [kb_name, query, k, mode], [hits], api_name=False)

            with gr.Tab("Train", id="train"):
                from hearth.jobs import list_recipes

                recipes = [r["name"] for r in list_recipes()]
                with gr.Row():
                    recipe = gr.Dropdown(recipes, value=recipes[0] if recipes else None, label="Recipe (configs/)")
                with gr.Row():
                    lr = gr.Number(label="learning_rate")
                    bs = gr.Number(label="batch_size", precision=0)
                    steps = gr.Number(label="max_steps", precision=0)
                    optim = gr.Dropdown(["adamw", "adam", "sgd"], label="optimizer")
                with gr.Row():
                    layers = gr.Number(label="num_layers", precision=0)
                    hidden = gr.Number(label="hidden_size", precision=0)
                    dropout = gr.Number(label="dropout")
                    wd = gr.Number(label="weight_decay")
                form = [lr, bs, steps, layers, hidden, dropout, optim, wd]
                with gr.Row():
                    start = gr.Button("Start training", variant="primary")
                    stop = gr.Button("Stop", variant="stop")
                status = gr.Markdown()
                job_id = gr.State("")
                curve = gr.LinePlot(x="step", y="loss", color="split", title="Loss", height=320)
                recipe.change(recipe_form, [recipe], form)
                start.click(train_start, [recipe, *form], [status, curve, job_id])
                stop.click(train_stop, [job_id], [status])
                ui.load(recipe_form, [recipe], form)

            with gr.Tab("Models", id="models"):
                with gr.Row():
                    insp_model = gr.Dropdown(
                        [m for m in models if not m.startswith("remote:")],
                        value=settings.model,
                        label="Model",
                        allow_custom_value=True,
                    )
                    context = gr.Number(value=2048, label="Context (tokens)", precision=0)
                    insp_btn = gr.Button("Inspect", variant="primary")
                with gr.Row():
                    calc_params = gr.Textbox(label="…or estimate any size (e.g. 7B, 135M)", value="7B")
                    calc_btn = gr.Button("Estimate memory")
                summary = gr.Markdown()
                with gr.Row():
                    arch = gr.Dataframe(label="Architecture", interactive=False)
                    memory = gr.Dataframe(label="Memory", interactive=False)
                params_chart = gr.BarPlot(x="role", y="params", title="Parameters by role", height=300)
                outs = [arch, memory, params_chart, summary]
                insp_btn.click(inspect_named, [insp_model, context], outs, api_name="inspect_model")
                calc_btn.click(estimate, [calc_params, context], outs)

            with gr.Tab("Runs", id="runs"):
                with gr.Row():
                    runs_pick = gr.Dropdown([], multiselect=True, label="Runs to compare", scale=4)
                    split = gr.Radio(["train", "val"], value="val", label="Split", scale=1)
                    refresh = gr.Button("Refresh", scale=1)
                runs_plot = gr.LinePlot(x="step", y="loss", color="run", title="Loss by run", height=360)
                refresh.click(lambda: gr.update(choices=run_ids()), None, [runs_pick])
                runs_pick.change(compare, [runs_pick, split], [runs_plot])
                split.change(compare, [runs_pick, split], [runs_plot])
                ui.load(lambda: gr.update(choices=run_ids()), None, [runs_pick])

        ui.load(kb_refresh, None, [kb_name, kb_pick, docs])
    return ui


def theme() -> gr.themes.Base:
    # System fonts only: Gradio's default theme fetches Google Fonts, and Hearth must work offline.
    return gr.themes.Soft(
        primary_hue="orange",
        neutral_hue="slate",
        font=["system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
    )


def mount(app: FastAPI) -> FastAPI:
    limit = f"{app.state.settings.server.max_upload_mb:g}mb"  # Gradio refuses larger files before they are stored
    return gr.mount_gradio_app(
        app, build(app), path="/ui", css=CSS, theme=theme(), footer_links=[], ssr_mode=False, max_file_size=limit
    )

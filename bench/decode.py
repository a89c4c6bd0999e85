"""Decode speed of each local backend on the same prompt and model, and the thread policy.

Prints tokens/s for Hearth's torch path under several thread settings (each in a fresh process,
because OpenMP reads OMP_WAIT_POLICY once, when torch loads), for llama.cpp through Hearth's backend,
and for raw llama-cpp-python in the same run, with ratios against the raw engine.

    .venv/bin/python bench/decode.py [--tokens 64] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

PROMPT = [{"role": "user", "content": "Write a short story about a lighthouse keeper and a storm."}]


def worker(engine: str, threads: int, tokens: int, runs: int) -> dict:
    """Runs in a child process: load the bundled model, decode `tokens` greedy tokens `runs` times."""
    import torch

    from hearth.models import backends, bundled, generate

    if threads:
        torch.set_num_threads(threads)
    params = generate.sampling(temperature=0, max_tokens=tokens, repetition_penalty=1.0)
    if engine == "raw-llamacpp":
        from llama_cpp import Llama

        llm = Llama(model_path=str(bundled.gguf_path()), n_ctx=2048, n_threads=threads or os.cpu_count(), verbose=False)

        def once() -> int:
            out = llm.create_chat_completion(messages=PROMPT, max_tokens=tokens, temperature=0, repeat_penalty=1.0)
            return out["usage"]["completion_tokens"]
    else:
        model = backends.get_chat_model("smollm2", engine)

        def once() -> int:
            return model.complete(PROMPT, params).usage.completion_tokens

    once()  # warm-up: first call pays for lazy initialisation
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        n = once()
        rates.append(n / (time.perf_counter() - start))
    return {"tokens_per_s": statistics.median(rates), "tokens": n}


def run_child(engine: str, threads: int, env_extra: dict[str, str], args: argparse.Namespace) -> dict | None:
    env = {**os.environ, **env_extra}
    cmd = [
        sys.executable,
        __file__,
        "--child",
        engine,
        "--threads",
        str(threads),
        "--tokens",
        str(args.tokens),
        "--runs",
        str(args.runs),
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1:] or ["?"]
        print(f"  {engine} threads={threads} {env_extra}: failed ({tail[0]})")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(worker(args.child, args.threads, args.tokens, args.runs)))
        return

    cores = os.cpu_count() or 1
    cases = [
        ("torch", 1, {"OMP_WAIT_POLICY": "PASSIVE"}, "torch, 1 thread"),
        ("torch", cores, {"OMP_WAIT_POLICY": "ACTIVE"}, f"torch, {cores} threads, OMP_WAIT_POLICY=ACTIVE"),
        ("torch", cores, {"OMP_WAIT_POLICY": "PASSIVE"}, f"torch, {cores} threads, PASSIVE (Hearth's default)"),
        ("llamacpp", cores, {}, "llama.cpp via Hearth's backend"),
        ("raw-llamacpp", cores, {}, "raw llama-cpp-python"),
    ]
    print(f"decode speed, bundled SmolLM2-135M, {args.tokens} greedy tokens, median of {args.runs} ({cores} cores)")
    results = {}
    for engine, threads, env, label in cases:
        res = run_child(engine, threads, env, args)
        if res:
            results[label] = res["tokens_per_s"]
    raw = results.get("raw llama-cpp-python")
    for label, rate in results.items():
        ratio = f"  ratio to raw llama.cpp: {rate / raw:.2f}" if raw else ""
        print(f"  {label:55s} {rate:7.1f} tok/s{ratio}", flush=True)
    if not raw:
        print("  (llama-cpp-python not installed: CMAKE_ARGS=-DGGML_NATIVE=OFF pip install 'hearth[llamacpp]')")


if __name__ == "__main__":
    main()

"""Serving speed on the bundled GGUF: raw `llama-server` vs `hearth serve` on its llama.cpp engine vs
`hearth serve` on torch, 1 and 8 streaming clients (the official openai SDK), in one run.

    .venv/bin/python bench/serve.py [--tokens 64] [--rounds 3] [--torch-tokens 32]

Each server runs in its own process (as users run them), on a free 127.0.0.1 port, one after the
other: raw `llama-server -np 8` with the same binary, file, context and threads Hearth gives its engine;
then `hearth serve` (engine: the default for GGUF); then `hearth serve --set engine.local=torch`.
Per server: one client (`--rounds` requests: decode tokens/s after the first token, time to first
token) and 8 clients at once (aggregate tokens/s over the wall time, TTFT p95). Printed as ratios to
raw llama-server measured in the same run; JSON goes to bench/results/serve-<time>.json.

Targets (issue 13, on 2 idle cores): engine ≥ 0.9× raw single-stream decode and 8-client aggregate,
8-client TTFT p95 ≤ 1.5× raw; torch must not starve: its TTFT p95 at 8 clients ≤ 8× its one-client TTFT.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROMPT = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {timeout} s")


def one_stream(client: Any, model: str, tokens: int) -> dict[str, float]:
    """One streamed request: time to first token, decode tokens/s after it, tokens, end time."""
    start = time.perf_counter()
    first = None
    n = 0
    stream = client.chat.completions.create(
        model=model,
        messages=PROMPT,
        max_tokens=tokens,
        temperature=0.0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
        if chunk.usage:
            n = chunk.usage.completion_tokens
    end = time.perf_counter()
    first = first or end
    rate = (n - 1) / (end - first) if n > 1 and end > first else 0.0
    return {"ttft": first - start, "decode": rate, "tokens": n, "start": start, "end": end}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def measure(url: str, model: str, tokens: int, rounds: int) -> dict[str, Any]:
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
    one_stream(client, model, 8)  # warm: first-call allocations, prompt cache
    singles = [one_stream(client, model, tokens) for _ in range(rounds)]
    results: list[dict[str, float]] = []
    lock = threading.Lock()

    def client_thread() -> None:
        r = one_stream(client, model, tokens)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=client_thread) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {
        "one": {
            "decode_tok_s": statistics.median(r["decode"] for r in singles),
            "ttft_s": statistics.median(r["ttft"] for r in singles),
        },
        "eight": {
            "aggregate_tok_s": sum(r["tokens"] for r in results) / wall,
            "ttft_p50_s": pct([r["ttft"] for r in results], 0.5),
            "ttft_p95_s": pct([r["ttft"] for r in results], 0.95),
            "tokens": sum(r["tokens"] for r in results),
            "wall_s": wall,
        },
    }


def run_raw(args: argparse.Namespace) -> dict[str, Any]:
    from hearth import config
    from hearth.models import bundled, engine

    settings = config.Settings().engine
    binary = engine.find_binary(settings)
    if binary is None:
        raise SystemExit(f"llama-server is not built: {engine.BUILD_HINT}")
    port = free_port()
    cmd = engine.command(engine.Spec("smollm2", bundled.gguf_path()), settings, port)  # as Hearth runs it
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        return {
            "command": " ".join(cmd[1:]),
            **measure(f"http://127.0.0.1:{port}", "smollm2", args.tokens, args.rounds),
        }
    finally:
        proc.terminate()
        proc.wait()


def run_hearth(args: argparse.Namespace, home: Path, engine: str, tokens: int) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, "HEARTH_HOME": str(home)}
    cmd = [str(Path(sys.executable).parent / "hearth"), "serve", "--port", str(port), "--no-ui", "--no-demo"]
    cmd += ["--set", f"engine.local={'torch' if engine == 'torch' else 'auto'}"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        result = measure(f"http://127.0.0.1:{port}", "smollm2", tokens, args.rounds)
        import httpx

        result["health_engine"] = httpx.get(f"http://127.0.0.1:{port}/health").json().get("engine", {}).get("engine")
        return result
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=64, help="answer length for raw and engine")
    ap.add_argument("--torch-tokens", type=int, default=32, help="answer length for torch (10× slower)")
    ap.add_argument("--rounds", type=int, default=3, help="one-client requests per server")
    ap.add_argument("--skip-torch", action="store_true")
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="hearth-bench-"))
    shared = Path(os.environ.get("HEARTH_HOME", "~/.hearth")).expanduser() / "models"
    shared.mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(shared, target_is_directory=True)

    out: dict[str, Any] = {"cores": os.cpu_count(), "load_before": os.getloadavg()[0], "tokens": args.tokens}
    out["raw"] = run_raw(args)
    out["engine"] = run_hearth(args, home, "engine", args.tokens)
    if not args.skip_torch:
        out["torch"] = run_hearth(args, home, "torch", args.torch_tokens)
    out["load_after"] = os.getloadavg()[0]

    raw, eng = out["raw"], out["engine"]
    ratios = {
        "engine_decode_vs_raw": eng["one"]["decode_tok_s"] / raw["one"]["decode_tok_s"],
        "engine_aggregate8_vs_raw": eng["eight"]["aggregate_tok_s"] / raw["eight"]["aggregate_tok_s"],
        "engine_ttft_p95_8_vs_raw": eng["eight"]["ttft_p95_s"] / raw["eight"]["ttft_p95_s"],
    }
    if "torch" in out:
        ratios["torch_ttft_p95_8_vs_torch_1"] = out["torch"]["eight"]["ttft_p95_s"] / out["torch"]["one"]["ttft_s"]
        ratios["engine_decode_vs_torch"] = eng["one"]["decode_tok_s"] / out["torch"]["one"]["decode_tok_s"]
    out["ratios"] = ratios

    print(f"{'server':<22}{'1 client tok/s':>16}{'1 client TTFT':>15}{'8 clients tok/s':>17}{'8 TTFT p95':>12}")
    for name in ("raw", "engine", "torch"):
        if name in out:
            r = out[name]
            print(
                f"{name:<22}{r['one']['decode_tok_s']:>16.1f}{r['one']['ttft_s']:>14.2f}s"
                f"{r['eight']['aggregate_tok_s']:>17.1f}{r['eight']['ttft_p95_s']:>11.2f}s"
            )
    targets = {
        "engine_decode_vs_raw": ("≥", 0.9),
        "engine_aggregate8_vs_raw": ("≥", 0.9),
        "engine_ttft_p95_8_vs_raw": ("≤", 1.5),
        "torch_ttft_p95_8_vs_torch_1": ("≤", 8.0),
    }
    for key, value in ratios.items():
        sign, goal = targets.get(key, ("", 0))
        ok = "" if not sign else ("  ok" if (value >= goal if sign == "≥" else value <= goal) else "  MISSED")
        print(f"{key:<32}{value:8.3f}" + (f"   (target {sign} {goal}){ok}" if sign else ""))
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    path = results / f"serve-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

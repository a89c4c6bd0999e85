"""Wall time of `hearth chat --max-tokens 8 "Hi"` from the shell, on a warm machine (model files cached).

Three ways, side by side in one run (median of --runs each):
- torch: `--engine torch --local`, the path the issue measured at 11 s (the baseline);
- engine: `--local`, the CLI starts llama.cpp's engine itself for this one question;
- server: a `hearth serve` is running, and the CLI asks it (no model load, no torch in the CLI).

Target (issue 13): ≤ 3 s wall. Results go to bench/results/cli-<time>.json.

    .venv/bin/python bench/cli.py [--runs 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEARTH = str(Path(sys.executable).parent / "hearth")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    out = subprocess.run([HEARTH, "chat", "--max-tokens", "8", "-t", "0", *args, "Hi"], env=env, capture_output=True)
    if out.returncode:
        raise SystemExit(f"hearth chat {' '.join(args)} failed:\n{out.stderr.decode()[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--home", default=None, help="Hearth home (default: a temporary one)")
    args = ap.parse_args()

    home = Path(args.home or tempfile.mkdtemp(prefix="hearth-bench-cli-"))
    port = free_port()
    env = {**os.environ, "HEARTH_HOME": str(home), "HEARTH_SERVER__PORT": str(port)}
    # warm: the torch engine's safetensors copy exists, the GGUF is on disk, imports are in the page cache
    timed(["--engine", "torch", "--local"], env)
    timed(["--local"], env)

    results: dict[str, list[float]] = {"torch": [], "engine": [], "server": []}
    for _ in range(args.runs):
        results["torch"].append(timed(["--engine", "torch", "--local"], env))
        results["engine"].append(timed(["--local"], env))

    server = subprocess.Popen(
        [HEARTH, "serve", "--no-ui", "--no-demo", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import httpx

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        timed([], env)  # the server loads its model on the first question
        for _ in range(args.runs):
            results["server"].append(timed([], env))
    finally:
        server.terminate()
        server.wait(30)

    med = {k: statistics.median(v) for k, v in results.items()}
    print(f"{'way':<8} {'median s':>9} {'runs':>28}   vs torch")
    for k, v in results.items():
        print(f"{k:<8} {med[k]:>9.2f} {', '.join(f'{x:.2f}' for x in v):>28}   {med['torch'] / med[k]:.1f}x faster")
    print(
        f"target ≤ 3 s: engine {'met' if med['engine'] <= 3 else 'missed'}, server {'met' if med['server'] <= 3 else 'missed'}"
    )
    out = ROOT / "bench" / "results" / f"cli-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": results, "median": med, "cores": os.cpu_count()}, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()

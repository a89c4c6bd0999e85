"""Serving overhead and latency: decode tokens/s through the HTTP API vs the backend called directly
(target ratio ≥ 0.95), and time to first token (p50/p95) with 1 and 8 concurrent streaming clients.

    .venv/bin/python bench/serve.py [--tokens 64] [--rounds 3]

Starts a real server (uvicorn, 127.0.0.1, free port) on the bundled model in a temporary Hearth home
(models/ from ~/.hearth is reused when present so nothing is converted twice).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

PROMPT = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def decode_rate(first: float, end: float, tokens: int) -> float:
    """Tokens after the first, per second after the first arrived: decoding speed without prefill."""
    return (tokens - 1) / (end - first) if tokens > 1 and end > first else 0.0


def direct(tokens: int) -> float:
    from hearth.models.backends import get_chat_model
    from hearth.models.generate import sampling

    model = get_chat_model("smollm2")
    params = sampling(temperature=0.0, max_tokens=tokens)
    first = None
    n = 0
    for d in model.stream(PROMPT, params):
        if first is None and d.text:
            first = time.perf_counter()
        if d.usage:
            n = d.usage.completion_tokens
    return decode_rate(first or 0.0, time.perf_counter(), n)


def over_http(client, tokens: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(decode tokens/s, time to first token) for one streamed request."""
    start = time.perf_counter()
    first = None
    n = 0
    stream = client.chat.completions.create(
        model="smollm2",
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
    return decode_rate(first or end, end, n), (first or end) - start


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="hearth-bench-"))
    shared = Path(os.environ.get("HEARTH_HOME", "~/.hearth")).expanduser() / "models"
    shared.mkdir(parents=True, exist_ok=True)
    (home / "models").symlink_to(shared, target_is_directory=True)
    os.environ["HEARTH_HOME"] = str(home)

    import openai
    import uvicorn

    from hearth.serve.app import create_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(ui=False, mcp=False), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0)

    direct(8)  # warm up: load the model, first-call allocations
    over_http(client, 8)
    d_rates, h_rates = [], []
    for _ in range(args.rounds):  # interleaved, so drift in machine load hits both alike
        d_rates.append(direct(args.tokens))
        h_rates.append(over_http(client, args.tokens)[0])
    d, h = statistics.median(d_rates), statistics.median(h_rates)
    print(f"decode tokens/s  direct {d:6.1f}   http {h:6.1f}   ratio {h / d:.3f}  (target ≥ 0.95)")

    for clients in (1, 8):
        ttfts: list[float] = []
        lock = threading.Lock()

        def one(ttfts: list[float] = ttfts, lock: threading.Lock = lock) -> None:
            _, ttft = over_http(client, 16)
            with lock:
                ttfts.append(ttft)

        for _ in range(args.rounds if clients == 1 else 1):
            threads = [threading.Thread(target=one) for _ in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        print(
            f"time to first token, {clients} concurrent client(s): p50 {pct(ttfts, 0.5) * 1000:7.0f} ms   "
            f"p95 {pct(ttfts, 0.95) * 1000:7.0f} ms   (n={len(ttfts)}, 16-token answers, served in order)"
        )
    server.should_exit = True


if __name__ == "__main__":
    main()

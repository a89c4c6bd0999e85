"""The generation queue: many users, one small model.

A local model decodes one request at a time (two concurrent decodes on a small CPU are each slower
than one after the other), so requests for local models go through one worker thread in arrival
order. Remote backends do their own scheduling and run side by side. Each request holds a ticket:

- the queue refuses new work past ``max_pending`` (the API answers 429 with ``Retry-After``);
- a client that disconnects cancels its ticket, and the worker closes the generator at the next token,
  which frees the model for the next request at once;
- a request past its deadline (waiting + decoding) stops with ``GenerationTimeout``.

It also keeps the numbers ``/metrics`` shows: queue length, tokens/s, latencies.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from hearth.errors import HearthError
from hearth.models.generate import Delta


class QueueFull(HearthError):
    status = 429
    code = "queue_full"

    def __init__(self, message: str, hint: str = "", retry_after: int = 1) -> None:
        super().__init__(message, hint)
        self.retry_after = retry_after


class GenerationTimeout(HearthError):
    status = 504
    code = "timeout"


@dataclass
class Ticket:
    """One request's place in the queue; ``cancel()`` stops it wherever it is."""

    deadline: float
    enqueued: float = field(default_factory=time.monotonic)
    started: float | None = None
    first_token: float | None = None
    _cancel: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()


_DONE = object()


class Metrics:
    """Counters and recent samples, rendered in Prometheus' text format."""

    def __init__(self, window: int = 512) -> None:
        self.requests = 0
        self.rejected = 0
        self.cancelled = 0
        self.timeouts = 0
        self.errors = 0
        self.tokens = 0
        self.decode_seconds = 0.0
        self.latency: deque[float] = deque(maxlen=window)  # enqueue → last token
        self.ttft: deque[float] = deque(maxlen=window)  # enqueue → first token
        self.per_request: deque[float] = deque(maxlen=64)  # seconds of model time, for Retry-After
        self.lock = threading.Lock()

    def tokens_per_second(self) -> float:
        return self.tokens / self.decode_seconds if self.decode_seconds > 0 else 0.0

    def mean_request_seconds(self) -> float:
        with self.lock:
            return sum(self.per_request) / len(self.per_request) if self.per_request else 2.0


def quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


class GenerationQueue:
    def __init__(self, max_pending: int = 64, timeout: float = 300.0, remote_workers: int = 16) -> None:
        self.max_pending = max_pending
        self.timeout = timeout
        self.metrics = Metrics()
        self._local = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hearth-decode")
        self._remote = ThreadPoolExecutor(max_workers=remote_workers, thread_name_prefix="hearth-remote")
        self._lock = threading.Lock()
        self.waiting = 0  # tickets not yet started
        self.running = 0

    @property
    def pending(self) -> int:
        return self.waiting + self.running

    def admit(self, timeout: float | None = None) -> Ticket:
        """A ticket for one request, or QueueFull when too many are already waiting."""
        with self._lock:
            if self.pending >= self.max_pending:
                self.metrics.rejected += 1
                wait = self.metrics.mean_request_seconds() * self.pending
                raise QueueFull(
                    f"the server is busy: {self.pending} requests are queued for the model",
                    "retry after the time in the Retry-After header",
                    retry_after=max(1, math.ceil(wait)),
                )
            self.waiting += 1
            self.metrics.requests += 1
        return Ticket(deadline=time.monotonic() + (timeout or self.timeout))

    async def stream(
        self, ticket: Ticket, produce: Callable[[], Iterator[Delta]], local: bool = True
    ) -> AsyncIterator[Delta]:
        """Run ``produce()`` on a worker thread and yield its deltas here; closing this closes that."""
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[Any] = asyncio.Queue()

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(out.put_nowait, item)

        executor = self._local if local else self._remote
        executor.submit(self._work, ticket, produce, put)
        try:
            while True:
                item = await out.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            # Disconnect, error or normal end: either way the worker must stop decoding for us.
            ticket.cancel()

    def _work(self, ticket: Ticket, produce: Callable[[], Iterator[Delta]], put: Callable[[Any], None]) -> None:
        with self._lock:
            self.waiting -= 1
            self.running += 1
        ticket.started = time.monotonic()
        tokens = 0
        deltas: Iterator[Delta] | None = None
        try:
            if ticket.cancelled:
                return
            if ticket.started > ticket.deadline:
                raise GenerationTimeout("the request waited in the queue past its timeout", "retry later")
            deltas = produce()
            for delta in deltas:
                if ticket.first_token is None:
                    ticket.first_token = time.monotonic()
                if delta.usage is not None:
                    tokens = delta.usage.completion_tokens
                put(delta)
                if ticket.cancelled:
                    self.metrics.cancelled += 1
                    return
                if time.monotonic() > ticket.deadline:
                    raise GenerationTimeout(
                        f"the answer took longer than the {self.timeout:.0f} s request timeout",
                        "ask for fewer tokens (max_tokens), or raise the server's timeout",
                    )
        except GenerationTimeout as exc:
            self.metrics.timeouts += 1
            put(exc)
        except HearthError as exc:
            self.metrics.errors += 1
            put(exc)
        except Exception as exc:  # surface it to the client as a 500 instead of killing the worker
            self.metrics.errors += 1
            put(exc)
        finally:
            if deltas is not None and hasattr(deltas, "close"):
                deltas.close()  # releases the model's lock now, not when the generator is collected
            end = time.monotonic()
            with self._lock:
                self.running -= 1
            m = self.metrics
            with m.lock:
                m.tokens += tokens
                m.decode_seconds += end - ticket.started
                m.per_request.append(end - ticket.started)
                m.latency.append(end - ticket.enqueued)
                if ticket.first_token is not None:
                    m.ttft.append(ticket.first_token - ticket.enqueued)
            put(_DONE)

    def prometheus(self) -> str:
        m = self.metrics
        with m.lock:
            lat, ttft = list(m.latency), list(m.ttft)
        lines = [
            "# HELP hearth_queue_waiting Requests waiting for the model.",
            "# TYPE hearth_queue_waiting gauge",
            f"hearth_queue_waiting {self.waiting}",
            "# HELP hearth_queue_running Requests being decoded.",
            "# TYPE hearth_queue_running gauge",
            f"hearth_queue_running {self.running}",
            "# TYPE hearth_requests_total counter",
            f"hearth_requests_total {m.requests}",
            "# TYPE hearth_requests_rejected_total counter",
            f"hearth_requests_rejected_total {m.rejected}",
            "# TYPE hearth_requests_cancelled_total counter",
            f"hearth_requests_cancelled_total {m.cancelled}",
            "# TYPE hearth_requests_timeout_total counter",
            f"hearth_requests_timeout_total {m.timeouts}",
            "# TYPE hearth_requests_error_total counter",
            f"hearth_requests_error_total {m.errors}",
            "# TYPE hearth_generated_tokens_total counter",
            f"hearth_generated_tokens_total {m.tokens}",
            "# HELP hearth_tokens_per_second Generated tokens per second of decoding, since start.",
            "# TYPE hearth_tokens_per_second gauge",
            f"hearth_tokens_per_second {m.tokens_per_second():.3f}",
        ]
        for name, values in (("request_latency_seconds", lat), ("time_to_first_token_seconds", ttft)):
            lines.append(f"# TYPE hearth_{name} summary")
            for q in (0.5, 0.95, 0.99):
                lines.append(f'hearth_{name}{{quantile="{q}"}} {quantile(values, q):.4f}')
            lines.append(f"hearth_{name}_sum {sum(values):.4f}")
            lines.append(f"hearth_{name}_count {len(values)}")
        return "\n".join(lines) + "\n"

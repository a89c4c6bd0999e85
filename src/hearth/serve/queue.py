"""The generation queue: many users, a few engines, each used the way it is fastest.

Each request runs on a lane that fits the model answering it:

- a model on the llama.cpp engine decodes up to ``engine.slots`` requests together (continuous
  batching inside llama-server), so its lane runs that many at once, in arrival order after that;
- a torch model is decoded by one thread (two concurrent decodes on a small CPU are each slower than
  one after the other), which takes turns between up to ``TORCH_TURNS`` requests, a token each, so a
  request's first token never waits for every answer ahead of it;
- remote backends do their own scheduling and run side by side;
- embeddings run on their embedder's lane (a local one shares the torch lane's CPU), a batch of inputs
  per step, so a client that leaves stops them between batches.

Each request holds a ticket:

- the queue refuses new work past ``max_pending`` (the API answers 429 with ``Retry-After``);
- a client that disconnects cancels its ticket, and the worker closes the generator at the next token
  (or batch), which frees the model (or the engine's slot) for the next request at once;
- a request past its deadline (waiting + decoding) stops with ``GenerationTimeout``.

It also keeps what ``/metrics`` shows, with prometheus-client: queue length, slots busy, tokens,
time to first token and latency histograms, and the engines' restarts.
"""

from __future__ import annotations

import asyncio
import math
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from hearth.errors import HearthError

T = TypeVar("T")  # what a request's producer yields: chat ``Delta``s, or batches of embeddings


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
TORCH_TURNS = 8  # requests the torch lane decodes in turn; later ones wait for a place
# Time-to-first-token and latency buckets: from a warm engine's tens of milliseconds to a long answer.
_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0)


class Metrics:
    """The queue's Prometheus metrics, in a registry of its own (one per app: tests build several)."""

    def __init__(self, queue: GenerationQueue) -> None:
        from hearth.models import engine

        r = self.registry = CollectorRegistry()
        self.requests = Counter("hearth_requests", "Requests admitted to the queue", registry=r)
        self.rejected = Counter("hearth_requests_rejected", "Requests refused with 429 (queue full)", registry=r)
        self.cancelled = Counter("hearth_requests_cancelled", "Requests whose client went away", registry=r)
        self.timeouts = Counter("hearth_requests_timeout", "Requests stopped at their deadline", registry=r)
        self.errors = Counter("hearth_requests_error", "Requests that failed", registry=r)
        self.tokens = Counter("hearth_generated_tokens", "Generated tokens", ["engine"], registry=r)
        self.ttft = Histogram(
            "hearth_time_to_first_token_seconds",
            "Enqueue to first token",
            ["engine"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "hearth_request_latency_seconds", "Enqueue to last token", ["engine"], buckets=_BUCKETS, registry=r
        )
        Gauge("hearth_queue_waiting", "Requests waiting for a model", registry=r).set_function(lambda: queue.waiting)
        Gauge("hearth_queue_running", "Requests being decoded", registry=r).set_function(lambda: queue.running)
        Gauge("hearth_engine_slots", "Slots of the running llama.cpp engines", registry=r).set_function(
            lambda: sum(e.settings.slots for e in engine.running() if e.pid)
        )
        Gauge("hearth_engine_slots_busy", "Slots decoding a request", registry=r).set_function(
            lambda: sum(e.busy for e in engine.running())
        )
        Gauge(
            "hearth_tokens_per_second", "Generated tokens per second of decoding, since start", registry=r
        ).set_function(self.tokens_per_second)
        self.lock = threading.Lock()
        self.token_count = 0
        self.decode_seconds = 0.0  # summed over requests: per-request speed, not throughput
        self.recent: list[float] = []  # seconds of model time of recent requests, for Retry-After

    def tokens_per_second(self) -> float:
        return self.token_count / self.decode_seconds if self.decode_seconds > 0 else 0.0

    def mean_request_seconds(self) -> float:
        with self.lock:
            return sum(self.recent) / len(self.recent) if self.recent else 2.0

    def record(self, lane: str, tokens: int, ticket: Ticket, end: float) -> None:
        assert ticket.started is not None
        self.tokens.labels(lane).inc(tokens)
        self.latency.labels(lane).observe(end - ticket.enqueued)
        if ticket.first_token is not None:
            self.ttft.labels(lane).observe(ticket.first_token - ticket.enqueued)
        with self.lock:
            self.token_count += tokens
            self.decode_seconds += end - ticket.started
            self.recent = [*self.recent[-63:], end - ticket.started]


def lane_of(model: Any) -> str:
    """``llamacpp``, ``remote`` or ``torch``: how the model's requests are scheduled."""
    kind = getattr(model, "kind", "local")
    return kind if kind in ("llamacpp", "remote") else "torch"


class GenerationQueue:
    def __init__(self, max_pending: int = 64, timeout: float = 300.0, remote_workers: int = 16) -> None:
        self.max_pending = max_pending
        self.timeout = timeout
        self._torch_jobs: queue.Queue[tuple[Any, ...]] = queue.Queue()
        threading.Thread(target=self._interleave, name="hearth-decode", daemon=True).start()
        self._remote = ThreadPoolExecutor(max_workers=remote_workers, thread_name_prefix="hearth-remote")
        self._engines: dict[str, ThreadPoolExecutor] = {}  # one lane per engine model, as wide as its slots
        self._lock = threading.Lock()
        self.waiting = 0  # tickets not yet started
        self.running = 0
        self.metrics = Metrics(self)

    @property
    def pending(self) -> int:
        return self.waiting + self.running

    def admit(self, timeout: float | None = None) -> Ticket:
        """A ticket for one request, or QueueFull when too many are already waiting."""
        with self._lock:
            if self.pending >= self.max_pending:
                self.metrics.rejected.inc()
                lanes = max(1, self.running)  # requests that finish together free places together
                wait = self.metrics.mean_request_seconds() * self.pending / lanes
                raise QueueFull(
                    f"the server is busy: {self.pending} requests are queued for the model",
                    "retry after the time in the Retry-After header",
                    retry_after=max(1, math.ceil(wait)),
                )
            self.waiting += 1
            self.metrics.requests.inc()
        return Ticket(deadline=time.monotonic() + (timeout or self.timeout))

    def _executor(self, lane: str, model: Any) -> ThreadPoolExecutor:
        if lane == "remote":
            return self._remote
        name = str(getattr(model, "name", ""))
        with self._lock:
            if name not in self._engines:
                slots = model.engine.settings.slots
                self._engines[name] = ThreadPoolExecutor(max_workers=slots, thread_name_prefix="hearth-engine")
            return self._engines[name]

    async def stream(self, ticket: Ticket, produce: Callable[[], Iterator[T]], model: Any = None) -> AsyncIterator[T]:
        """Run ``produce()`` on the lane for ``model`` and yield its items here; closing this closes that.

        ``produce`` is usually a chat ``Reply``'s ``deltas``, whose reply knows its model, or an
        embedder's batches (``model`` is the embedder); with no model at all it runs on the torch lane.
        """
        if model is None:
            model = getattr(getattr(produce, "__self__", None), "model", None)
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[Any] = asyncio.Queue()

        def put(item: Any) -> None:
            loop.call_soon_threadsafe(out.put_nowait, item)

        lane = lane_of(model)
        if lane == "torch":
            self._torch_jobs.put((ticket, produce, put, lane))
        else:
            self._executor(lane, model).submit(self._work, ticket, produce, put, lane)
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

    def _work(
        self, ticket: Ticket, produce: Callable[[], Iterator[Any]], put: Callable[[Any], None], lane: str
    ) -> None:
        for _ in self._steps(ticket, produce, put, lane):
            pass

    def _steps(
        self, ticket: Ticket, produce: Callable[[], Iterator[Any]], put: Callable[[Any], None], lane: str
    ) -> Iterator[None]:
        """One request, one delta (or batch) per step: a thread runs it to the end, or the torch lane takes
        turns between several (see ``_interleave``)."""
        with self._lock:
            self.waiting -= 1
            self.running += 1
        ticket.started = time.monotonic()
        tokens = 0
        deltas: Iterator[Any] | None = None
        try:
            if ticket.cancelled:  # the client left while it waited
                self.metrics.cancelled.inc()
                return
            if ticket.started > ticket.deadline:
                raise GenerationTimeout("the request waited in the queue past its timeout", "retry later")
            deltas = produce()
            for delta in deltas:
                if ticket.first_token is None:
                    ticket.first_token = time.monotonic()
                usage = getattr(delta, "usage", None)  # a chat delta's; a batch of embeddings has none
                if usage is not None:
                    tokens = usage.completion_tokens
                put(delta)
                if ticket.cancelled:
                    self.metrics.cancelled.inc()
                    return
                if time.monotonic() > ticket.deadline:
                    raise GenerationTimeout(
                        f"the answer took longer than the {self.timeout:.0f} s request timeout",
                        "ask for fewer tokens (max_tokens), or raise the server's timeout",
                    )
                yield
        except GenerationTimeout as exc:
            self.metrics.timeouts.inc()
            put(exc)
        except Exception as exc:  # surface it to the client (HearthError: its status; else 500), keep the worker
            self.metrics.errors.inc()
            put(exc)
        finally:
            if deltas is not None and hasattr(deltas, "close"):
                deltas.close()  # releases the model (torch lock, engine slot) now, not when collected
            end = time.monotonic()
            with self._lock:
                self.running -= 1
            self.metrics.record(lane, tokens, ticket, end)
            put(_DONE)

    def _interleave(self) -> None:
        """The torch lane: one thread decodes every admitted request a token at a time, in turn.

        A CPU decodes one sequence about as fast as it decodes eight in turn, so turns cost no
        throughput, and nobody waits for all the answers ahead of theirs before seeing a first token.
        A request that joins gets its first token (its prompt's prefill) before anyone's next one, as
        vLLM schedules prefills first: its time to first token does not include a turn of the others.
        """
        active: list[Iterator[None]] = []

        def step(job: Iterator[None]) -> bool:
            try:
                next(job)
                return True
            except StopIteration:
                return False

        def admit(block: bool) -> None:
            while len(active) < TORCH_TURNS and (block or not self._torch_jobs.empty()):
                job = self._steps(*self._torch_jobs.get())
                block = False
                if step(job):
                    active.append(job)

        while True:
            admit(block=not active)
            for job in list(active):
                admit(block=False)
                if not step(job):
                    active.remove(job)

    def prometheus(self) -> str:
        """The text ``/metrics`` serves: this queue's metrics and the engines' (restarts, starts)."""
        from hearth.models import engine

        return (generate_latest(self.metrics.registry) + generate_latest(engine.REGISTRY)).decode()

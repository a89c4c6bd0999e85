"""The llama.cpp engine: one managed ``llama-server`` process per loaded GGUF model, as Ollama runs its runners.

``make setup`` builds ``llama-server`` from the pinned sources that the ``llama-cpp-python`` sdist vendors
(scripts/build-llama-server.sh) into ``~/.cache/hearth/llama.cpp/<VERSION>/``. Here Hearth starts one
process per model (a GGUF file, plus a LoRA GGUF for ``base+adapter``) on a free loopback port, waits
until it answers ``/health``, and keeps it: a process that dies is started again (logged, and counted in
``hearth_engine_restarts_total``), one idle for ``engine.idle_stop`` seconds is stopped, and none
outlives Hearth — ``atexit`` stops them on a normal exit, and on Linux the kernel kills them when
Hearth dies any other way (``PR_SET_PDEATHSIG``, even after ``kill -9``).

The kernel sends that signal when the *thread* that forked the child ends, not the process; so every
process is forked by one long-lived supervisor thread, which also watches for deaths and idleness.
Slots (``-np``), the context per slot and threads come from ``settings.engine``.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
from prometheus_client import CollectorRegistry, Counter

from hearth import paths
from hearth.config import EngineSettings
from hearth.cpu import usable_cores
from hearth.errors import BackendError, GenerationError

log = logging.getLogger("hearth.engine")

VERSION = "0.3.36"  # the llama-cpp-python sdist whose vendored llama.cpp scripts/build-llama-server.sh builds
BUILD_HINT = "run `make setup` (it builds llama-server; needs cmake and a C++ compiler: apt-get install cmake g++)"

# Process-wide: the engines outlive any one app. /metrics appends these to the queue's own.
REGISTRY = CollectorRegistry()
RESTARTS = Counter(
    "hearth_engine_restarts", "llama-server processes started again after they died", ["model"], registry=REGISTRY
)
STARTS = Counter("hearth_engine_starts", "llama-server processes started", ["model"], registry=REGISTRY)


def cache_dir() -> Path:
    """Where the build script puts this version's build (``HEARTH_ENGINE_CACHE`` moves it, as in the script)."""
    return Path(os.environ.get("HEARTH_ENGINE_CACHE", "~/.cache/hearth/llama.cpp")).expanduser() / VERSION


def find_binary(settings: EngineSettings) -> Path | None:
    """The llama-server to run: ``engine.binary`` if set, else the one ``make setup`` built."""
    path = Path(settings.binary).expanduser() if settings.binary else cache_dir() / "bin" / "llama-server"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def unavailable(settings: EngineSettings) -> str | None:
    """Why GGUF models cannot run on llama.cpp here (None when they can)."""
    if find_binary(settings) is None:
        where = settings.binary or str(cache_dir() / "bin" / "llama-server")
        return f"llama-server is not built ({where} missing)"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# the supervisor thread: forks every engine, restarts dead ones, stops idle ones

_PR_SET_PDEATHSIG = 1
_libc: Any = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError):
        _libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child after fork should only call it


def _die_with_parent(parent: int) -> Callable[[], None]:
    def preexec() -> None:
        if _libc is not None:
            _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # Hearth died between fork and prctl: nobody would kill us later
            os._exit(1)

    return preexec


class _Supervisor:
    """One daemon thread that forks engine processes (so PDEATHSIG ties them to Hearth's life) and
    checks every engine once a second."""

    def __init__(self) -> None:
        self.jobs: queue.Queue[tuple[list[str], Path, Future[subprocess.Popen[bytes]]]] = queue.Queue()
        self.engines: list[Engine] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="hearth-engines", daemon=True)
        self.thread.start()

    def spawn(self, cmd: list[str], log_file: Path) -> subprocess.Popen[bytes]:
        if threading.current_thread() is self.thread:
            return self._popen(cmd, log_file)
        done: Future[subprocess.Popen[bytes]] = Future()
        self.jobs.put((cmd, log_file, done))
        return done.result(timeout=30)

    def _popen(self, cmd: list[str], log_file: Path) -> subprocess.Popen[bytes]:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "wb") as out:
            return subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent(os.getpid()),  # PDEATHSIG can only be set in the child
                start_new_session=True,  # a terminal's Ctrl-C goes to Hearth alone, which stops its engines
            )

    def _run(self) -> None:
        while True:
            try:
                cmd, log_file, done = self.jobs.get(timeout=1.0)
            except queue.Empty:
                self._check()
                continue
            try:
                done.set_result(self._popen(cmd, log_file))
            except Exception as exc:  # handed to the caller, which says what failed
                done.set_exception(exc)

    def _check(self) -> None:
        with self.lock:
            engines = list(self.engines)
        for engine in engines:
            with contextlib.suppress(Exception):  # one engine's trouble must not stop the watch on others
                engine.check()

    def stop_all(self) -> None:
        with self.lock:
            engines = list(self.engines)
        for engine in engines:
            engine.stop()


_supervisor: _Supervisor | None = None
_supervisor_lock = threading.Lock()


def supervisor() -> _Supervisor:
    global _supervisor
    with _supervisor_lock:
        if _supervisor is None:
            _supervisor = _Supervisor()
            atexit.register(_supervisor.stop_all)
        return _supervisor


# ---------------------------------------------------------------------------------------------
# one engine


@dataclass(frozen=True)
class Spec:
    """What one engine process serves."""

    name: str  # the model name users ask for (also the process's alias)
    model: Path  # the GGUF file
    lora: Path | None = None  # a LoRA adapter as GGUF, applied on top


def command(spec: Spec, settings: EngineSettings, port: int) -> list[str]:
    """The llama-server command line for ``spec`` (bench/serve.py runs the same one raw)."""
    binary = find_binary(settings)
    if binary is None:
        raise BackendError(f"llama.cpp engine unavailable: {unavailable(settings)}", BUILD_HINT)
    cmd = [str(binary), "-m", str(spec.model), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["-np", str(settings.slots), "-c", str(settings.slots * settings.context), "--alias", spec.name]
    cmd += ["-t", str(settings.threads or usable_cores()), "--no-webui", "--jinja"]
    if spec.lora is not None:
        cmd += ["--lora", str(spec.lora)]
    return cmd


class Engine:
    """One llama-server process for one model: started on first use, restarted if it dies."""

    def __init__(self, spec: Spec, settings: EngineSettings) -> None:
        self.spec = spec
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.ready = False
        self.busy = 0  # requests in flight
        self.last_used = time.monotonic()
        self.restarts = 0
        self.lock = threading.RLock()
        self.log_file = paths.home() / "logs" / f"engine-{_safe(spec.name)}.log"
        # One connection per slot and some for the small calls (tokenize, template), kept alive.
        conns = settings.slots * 2 + 4
        self.client = httpx.Client(
            timeout=httpx.Timeout(30.0, read=None),  # reads wait on decoding; the queue enforces deadlines
            limits=httpx.Limits(max_connections=conns, max_keepalive_connections=conns),
            verify=False,  # plain http to 127.0.0.1: no TLS, so no CA bundle to load (~70 ms of a CLI start)
        )
        sup = supervisor()
        with sup.lock:
            sup.engines.append(self)

    # -- lifecycle

    def ensure(self) -> str:
        """The engine's base URL, once it answers; starts (or restarts) the process when needed."""
        with self.lock:
            self.last_used = time.monotonic()
            if self.proc is not None and self.proc.poll() is not None:
                self._died()
            if self.proc is None:
                self._launch()
            if not self.ready:
                self._wait_ready()
            return self.url

    def _launch(self) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.ready = False
        self.proc = supervisor().spawn(command(self.spec, self.settings, port), self.log_file)
        STARTS.labels(self.spec.name).inc()
        log.info("engine for %s: llama-server pid %d on %s", self.spec.name, self.proc.pid, self.url)

    def _died(self) -> None:
        assert self.proc is not None
        code = self.proc.returncode
        self.proc = None
        self.ready = False
        self.restarts += 1
        RESTARTS.labels(self.spec.name).inc()
        log.warning(
            "engine for %s died (exit code %s); starting it again (restart %d). Log tail: %s",
            self.spec.name,
            code,
            self.restarts,
            self.log_tail(3),
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.settings.start_timeout
        while time.monotonic() < deadline:
            proc = self.proc
            if proc is None or proc.poll() is not None:
                self.proc = None
                raise BackendError(
                    f"llama-server for '{self.spec.name}' exited while starting: {self.log_tail(8)}",
                    f"see {self.log_file}; a GGUF file llama.cpp cannot read, or too little memory for "
                    "engine.slots × engine.context, are the usual causes",
                )
            with contextlib.suppress(httpx.HTTPError):
                if self.client.get(self.url + "/health", timeout=2.0).status_code == 200:
                    self.ready = True
                    return
            time.sleep(0.05)
        self.stop()
        raise BackendError(
            f"llama-server for '{self.spec.name}' did not become ready in {self.settings.start_timeout:.0f} s",
            f"see {self.log_file}; raise engine.start_timeout for very large models",
        )

    def check(self) -> None:
        """The supervisor's look once a second: restart a dead process, stop an idle one."""
        if not self.lock.acquire(blocking=False):
            return  # someone is starting or using it right now
        try:
            if self.proc is None:
                return
            if self.proc.poll() is not None:
                self._died()
                self._launch()  # ready is checked by the next request
                return
            idle = self.settings.idle_stop
            if idle > 0 and self.busy == 0 and time.monotonic() - self.last_used > idle:
                log.info("engine for %s idle for %.0f s: stopping it", self.spec.name, idle)
                self.stop()
        finally:
            self.lock.release()

    def stop(self) -> None:
        with self.lock:
            proc, self.proc, self.ready = self.proc, None, False
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def log_tail(self, lines: int) -> str:
        try:
            text = self.log_file.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:])

    # -- requests

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A small JSON call (tokenize, apply-template, props)."""
        for attempt in (1, 2):
            url = self.ensure()
            try:
                resp = self.client.post(url + path, json=body, timeout=60.0)
                break
            except httpx.TransportError as exc:
                # a process killed a moment ago may not be reaped yet: look again, start it, retry once
                if attempt == 2:
                    raise self._lost(exc) from None
                time.sleep(0.2)
        return self._checked(resp, resp.json() if resp.content else {})

    def get(self, path: str) -> dict[str, Any]:
        url = self.ensure()
        try:
            resp = self.client.get(url + path, timeout=60.0)
        except httpx.TransportError as exc:
            raise self._lost(exc) from None
        return self._checked(resp, resp.json())

    def complete_stream(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Stream ``/completion``: one JSON object per token, the last with ``stop: true``.
        Closing this generator closes the connection, and llama-server frees the slot at once."""
        url = self.ensure()
        with self.lock:
            self.busy += 1
        try:
            with self.client.stream("POST", url + "/completion", json={**body, "stream": True}) as resp:
                if resp.status_code != 200:
                    resp.read()
                    self._checked(resp, _json_or_text(resp))
                for line in resp.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = json.loads(line[6:])
                    if "error" in data:  # an error after the 200 comes as an event
                        err = data["error"]
                        self._raise(int(err.get("code") or 500) if isinstance(err, dict) else 500, data)
                    yield data
                    if data.get("stop"):
                        return
            raise self._lost(RuntimeError("the stream ended without its last token"))
        except httpx.TransportError as exc:
            raise self._lost(exc) from None
        finally:
            with self.lock:
                self.busy -= 1
                self.last_used = time.monotonic()

    def _lost(self, exc: Exception) -> BackendError:
        return BackendError(
            f"the llama.cpp engine for '{self.spec.name}' stopped answering ({exc})",
            "it is started again automatically; retry the request",
        )

    def _checked(self, resp: httpx.Response, data: Any) -> dict[str, Any]:
        if resp.status_code == 200:
            return data
        self._raise(resp.status_code, data)

    def _raise(self, status: int, data: Any) -> NoReturn:
        message = _message(data)
        err = data.get("error", {}) if isinstance(data, dict) else {}
        if isinstance(err, dict) and err.get("type") == "exceed_context_size_error":
            raise GenerationError(
                f"the prompt is {err.get('n_prompt_tokens')} tokens but the model's context is {err.get('n_ctx')}",
                "shorten the conversation or the retrieved context, or raise engine.context",
            )
        if 400 <= status < 500:
            raise GenerationError(f"llama.cpp engine refused the request: {message}", "check the request's parameters")
        raise BackendError(f"llama.cpp engine failed ({status}): {message}", f"see {self.log_file}")


def _json_or_text(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text


def _message(data: Any) -> str:
    if isinstance(data, dict):
        err = data.get("error", data)
        return str(err.get("message", err) if isinstance(err, dict) else err)
    return str(data)[:500]


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]


# ---------------------------------------------------------------------------------------------
# the engines of this process

_engines: dict[Spec, Engine] = {}
_engines_lock = threading.Lock()


def get(spec: Spec, settings: EngineSettings) -> Engine:
    """The engine for ``spec``, created once per process (started on its first request)."""
    with _engines_lock:
        if spec not in _engines:
            _engines[spec] = Engine(spec, settings)
        return _engines[spec]


def running() -> list[Engine]:
    with _engines_lock:
        return list(_engines.values())


def stop(name: str | None = None) -> None:
    """Stop the engines serving ``name`` (all when None); they start again on their next request."""
    for engine in running():
        if name is None or engine.spec.name == name:
            engine.stop()


def forget(name: str) -> None:
    """Stop and drop the engines for ``name`` (e.g. its adapter was retrained: new weights next time)."""
    with _engines_lock:
        gone = [spec for spec in _engines if spec.name == name]
        engines = [_engines.pop(spec) for spec in gone]
    sup = supervisor()
    for engine in engines:
        engine.stop()
        with sup.lock:
            sup.engines.remove(engine)


def status() -> list[dict[str, Any]]:
    """Per engine: model, pid, url, slots, busy, restarts — for /health and `hearth models`."""
    return [
        {
            "model": e.spec.name,
            "engine": "llamacpp",
            "pid": e.pid,
            "url": e.url if e.pid else None,
            "slots": e.settings.slots,
            "busy": e.busy,
            "restarts": e.restarts,
        }
        for e in running()
    ]

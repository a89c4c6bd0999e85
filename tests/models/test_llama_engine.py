"""The llama.cpp engine with the real llama-server on the bundled GGUF: sampling and streaming as the
ChatModel protocol promises, tool calls and JSON schemas through its grammar, restarts, no orphans.

Every test here shares one engine process (the models layer keeps one per model per process).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from hearth import config, paths
from hearth.config import EngineSettings
from hearth.errors import GenerationError
from hearth.models import engine, generate

pytestmark = pytest.mark.skipif(
    engine.find_binary(EngineSettings()) is None,
    reason="llama-server is not built: `make setup` builds it (needs cmake and a C++ compiler)",
)

ROOT = Path(__file__).resolve().parents[2]
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
FORECAST = {
    "type": "function",
    "function": {
        "name": "get_forecast",
        "description": "Weather forecast for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "unit": {"enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}
PROMPTS = ["Weather in Oslo for 3 days?", "Forecast Paris tomorrow in fahrenheit", "Will it rain in Lima this week?"]


@pytest.fixture(scope="module")
def llama(session_home: Path):  # type: ignore[no-untyped-def]
    """The bundled model on the engine: the default for a GGUF once llama-server is built."""
    from hearth.models import backends

    paths.set_home(session_home)
    try:
        model = backends.get_chat_model("smollm2", settings=config.Settings())
    finally:
        paths.set_home(None)
    assert model.kind == "llamacpp"
    return model


def test_default_engine_for_gguf_and_why() -> None:
    from hearth.models import backends, load

    settings = config.Settings()
    assert backends.choose_engine(load.resolve("smollm2"), settings) == (
        "llamacpp",
        "GGUF file on llama.cpp (quantized, batched)",
    )
    assert backends.choose_engine(load.resolve("smollm2"), settings, "torch")[0] == "torch"
    settings.engine.local = "torch"
    assert backends.choose_engine(load.resolve("smollm2"), settings)[0] == "torch"
    settings = config.Settings(engine={"binary": "/nonexistent/llama-server"})
    engine_name, why = backends.choose_engine(load.resolve("smollm2"), settings)
    assert engine_name == "torch" and "not built" in why


def test_the_build_script_pins_the_version_the_code_expects() -> None:
    script = (ROOT / "scripts" / "build-llama-server.sh").read_text()
    assert re.search(r'VERSION="\$\{LLAMA_CPP_PYTHON_VERSION:-([0-9.]+)\}"', script).group(1) == engine.VERSION


def test_stream_equals_complete_with_usage_and_finish(llama) -> None:  # type: ignore[no-untyped-def]
    params = generate.sampling(temperature=0, max_tokens=12)
    deltas = list(llama.stream(FRANCE, params))
    assert len(deltas) > 2 and deltas[-1].finish_reason in ("stop", "length")
    whole = llama.complete(FRANCE, params)
    assert "".join(d.text for d in deltas) == whole.text and "Paris" in whole.text
    assert whole.usage.prompt_tokens > 10 and 0 < whole.usage.completion_tokens <= 12

    short = llama.complete(FRANCE, generate.sampling(temperature=0, max_tokens=2))
    assert short.finish_reason == "length" and short.usage.completion_tokens == 2


def test_stop_strings_seed_and_sampling(llama) -> None:  # type: ignore[no-untyped-def]
    full = llama.complete(FRANCE, generate.sampling(temperature=0, max_tokens=24)).text
    assert "Paris" in full
    cut = llama.complete(FRANCE, generate.sampling(temperature=0, max_tokens=24, stop=["Paris"]))
    assert cut.text == full[: full.index("Paris")] and cut.finish_reason == "stop"

    params = generate.sampling(temperature=1.0, top_p=0.95, top_k=50, max_tokens=16, seed=11)
    first = llama.complete(FRANCE, params).text
    assert llama.complete(FRANCE, params).text == first  # same seed, same answer
    others = {llama.complete(FRANCE, generate.sampling(params, seed=s)).text for s in (1, 2, 3)}
    assert len(others | {first}) > 1  # the seed really reaches the sampler


def test_prompt_longer_than_the_context_is_a_clear_error(llama) -> None:  # type: ignore[no-untyped-def]
    long = [{"role": "user", "content": "word " * (llama.context_length + 50)}]
    with pytest.raises(GenerationError, match="context"):
        list(llama.stream(long, generate.sampling(max_tokens=4)))
    assert llama.count_tokens("word" + " word" * 9) == 10


@pytest.mark.slow
def test_forced_tool_call_validates_100_of_100(llama) -> None:  # type: ignore[no-untyped-def]
    """The engine's own JSON-schema grammar: at temperature 0.9 every forced call parses and validates."""
    from hearth.agent import toolcall

    choice = {"type": "function", "function": {"name": "get_forecast"}}
    seen: set[str] = set()
    for i in range(100):
        params = generate.sampling(max_tokens=64, temperature=0.9, seed=i)
        msgs = [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}]
        out = generate.collect(toolcall.complete_with_tools(llama, msgs, params, [FORECAST], choice))
        assert out.finish_reason == "tool_calls" and out.tool_calls and len(out.tool_calls) == 1
        call = out.tool_calls[0]
        assert call["function"]["name"] == "get_forecast"
        jsonschema.validate(json.loads(call["function"]["arguments"]), FORECAST["function"]["parameters"])
        seen.add(call["function"]["arguments"])
    assert len(seen) > 10  # sampling really varied: the grammar, not a fixed answer, makes them valid


def test_required_call_and_json_schema(llama) -> None:  # type: ignore[no-untyped-def]
    from hearth.agent import toolcall

    calc = {
        "type": "function",
        "function": {
            "name": "calculator",
            "parameters": {
                "type": "object",
                "properties": {"expression": {"type": "string"}},
                "required": ["expression"],
            },
        },
    }
    params = generate.sampling(max_tokens=96, temperature=0.8, seed=7)
    msgs = [{"role": "user", "content": "What is 12 times 7?"}]
    out = generate.collect(toolcall.complete_with_tools(llama, msgs, params, [FORECAST, calc], "required"))
    assert out.finish_reason == "tool_calls"
    tool = {"get_forecast": FORECAST, "calculator": calc}[out.tool_calls[0]["function"]["name"]]
    jsonschema.validate(json.loads(out.tool_calls[0]["function"]["arguments"]), tool["function"]["parameters"])

    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer"}, "sure": {"type": "boolean"}},
        "required": ["answer", "sure"],
        "additionalProperties": False,
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "result", "schema": schema}}
    for seed in range(5):
        out = generate.collect(
            toolcall.complete_with_tools(llama, msgs, generate.sampling(params, seed=seed), response_format=fmt)
        )
        jsonschema.validate(json.loads(out.text), schema)
    any_json = generate.collect(
        toolcall.complete_with_tools(
            llama, msgs, generate.sampling(params, max_tokens=48), response_format={"type": "json_object"}
        )
    )
    assert isinstance(json.loads(any_json.text), dict)


def test_auto_call_is_held_to_the_schema_by_a_lazy_grammar(llama) -> None:  # type: ignore[no-untyped-def]
    """tool_choice auto: text stays free, but once the model writes <tool_call> the engine's grammar for
    the tools' schemas takes over. With these seeds the model opens a call; without the grammar (the
    same sampling) it never finishes one that parses."""
    from hearth.agent import toolcall

    msgs = [{"role": "user", "content": "Answer only with a <tool_call> for the weather in Oslo for 3 days."}]
    prompt = llama.render(toolcall.local_messages(msgs, [FORECAST], native_tools=False))
    for seed in (3, 5, 8):
        params = generate.sampling(max_tokens=64, temperature=1.0, top_k=40, repetition_penalty=1.0, seed=seed)
        out = generate.collect(toolcall.complete_with_tools(llama, msgs, params, [FORECAST], "auto"))
        assert out.finish_reason == "tool_calls" and "<tool_call>" not in out.text, (seed, out)
        call = out.tool_calls[0]["function"]
        assert call["name"] == "get_forecast"
        jsonschema.validate(json.loads(call["arguments"]), FORECAST["function"]["parameters"])

        free = generate.collect(llama.stream(msgs, params, prompt=prompt)).text  # no grammar
        assert "<tool_call>" in free and not toolcall.parse_calls(free)[1], (seed, free)

    plain = [{"role": "user", "content": "What is the capital of France?"}]
    greedy = generate.sampling(max_tokens=24, temperature=0)
    out = generate.collect(toolcall.complete_with_tools(llama, plain, greedy, [FORECAST]))
    assert out.tool_calls is None and "Paris" in out.text  # a lazy grammar leaves answers alone

    # a schema llama.cpp's converter refuses: no grammar, the model's text is parsed (as torch does)
    broken = {"type": "function", "function": {"name": "x", "parameters": {"properties": {"a": {"$ref": "#/nope"}}}}}
    out = generate.collect(toolcall.complete_with_tools(llama, plain, greedy, [broken]))
    assert out.tool_calls is None and "Paris" in out.text


def test_a_runaway_forced_call_stops_at_max_tokens(llama) -> None:  # type: ignore[no-untyped-def]
    """Greedy, this forced call's string never closes (it did in the agent loop test, 1f2714f): it ends at
    max_tokens as an error with finish_reason 'length', never as an invalid call; a maxLength in the
    tool's schema bounds it in the grammar, and the call is valid."""
    from hearth.agent import toolcall

    def inventory(maxlength: int | None = None) -> dict:  # type: ignore[type-arg]
        item = {"description": "the item name", "type": "string"}  # as the loop's registry writes it
        if maxlength:
            item["maxLength"] = maxlength
        parameters = {
            "additionalProperties": False,
            "properties": {"item": item},
            "required": ["item"],
            "type": "object",
        }
        return {
            "type": "function",
            "function": {
                "name": "inventory",
                "description": "Count an item in the warehouse.",
                "parameters": parameters,
            },
        }

    msgs = [
        {"role": "system", "content": config.Settings().agent.system_prompt},
        {"role": "user", "content": "How many ladders are in the warehouse?"},
    ]
    choice = {"type": "function", "function": {"name": "inventory"}}
    greedy = generate.sampling(max_tokens=128, temperature=0.0)
    with pytest.raises(toolcall.ToolCallCutOff) as cut:
        generate.collect(toolcall.complete_with_tools(llama, msgs, greedy, [inventory()], choice))
    assert (
        cut.value.finish_reason == "length" and "max_tokens" in cut.value.message and "128 tokens" in cut.value.message
    )
    assert "maxLength" in cut.value.hint

    out = generate.collect(toolcall.complete_with_tools(llama, msgs, greedy, [inventory(24)], choice))
    assert out.finish_reason == "tool_calls"
    args = json.loads(out.tool_calls[0]["function"]["arguments"])
    assert 0 < len(args["item"]) <= 24


def test_engine_crash_is_restarted_and_counted(llama) -> None:  # type: ignore[no-untyped-def]
    eng = llama.engine
    eng.ensure()
    before = eng.restarts
    old = eng.pid
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while eng.proc is not None and eng.proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    # the next request succeeds on a new process
    answer = llama.complete(FRANCE, generate.sampling(temperature=0, max_tokens=6))
    assert answer.text and eng.pid not in (None, old)
    assert eng.restarts == before + 1
    sample = engine.REGISTRY.get_sample_value("hearth_engine_restarts_total", {"model": "smollm2"})
    assert sample is not None and sample >= 1


KILLED_PARENT = """
import sys, time
from hearth import config
from hearth.models import backends, generate
model = backends.get_chat_model("smollm2", settings=config.Settings())
model.complete([{"role": "user", "content": "Hi"}], generate.sampling(max_tokens=2))
print(model.engine.pid, flush=True)
time.sleep(600)
"""


def test_no_orphan_engine_after_kill_9_of_hearth(tmp_path: Path) -> None:
    """kill -9 runs no cleanup code: the kernel's parent-death signal must take the engine down."""
    env = {**os.environ, "HEARTH_HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_PARENT], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        child = int(line)
        assert _alive(child)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), f"llama-server {child} outlived its Hearth"


def test_the_cli_starts_a_one_slot_engine(tmp_path: Path) -> None:
    """`hearth chat` answering in its own process serves one conversation: its engine has one slot
    (ready in ~0.4 s where the server's eight take ~0.9 s: bench/cli.py)."""
    env = {**os.environ, "HEARTH_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "hearth.cli.main", "chat", "--local", "--max-tokens", "2", "-t", "0", "Hi"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr
    assert "n_slots = 1," in (tmp_path / "logs" / "engine-smollm2.log").read_text()


def test_idle_engine_stops_and_starts_again(home: Path) -> None:
    spec = engine.Spec("idle-test", Path(_gguf()))
    settings = EngineSettings(idle_stop=0.5, slots=1, context=512)
    eng = engine.Engine(spec, settings)
    try:
        eng.ensure()
        pid = eng.pid
        deadline = time.monotonic() + 10
        while (eng.pid is not None or _alive(pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert eng.pid is None and not _alive(pid)  # the supervisor stopped it
        assert eng.restarts == 0  # a stop is not a death
        eng.ensure()
        assert eng.pid is not None
    finally:
        eng.stop()


def _gguf() -> str:
    from hearth.models import bundled

    return str(bundled.gguf_path())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes (its parent, the killed Hearth, is gone; init reaps it)
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False

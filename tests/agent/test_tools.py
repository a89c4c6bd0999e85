"""The tool registry and built-in tools: schemas from functions, safe calculator, errors as results."""

from __future__ import annotations

import json
import time

import pytest

from hearth.agent import tools
from hearth.agent.tools import Registry, from_function


def _call(reg: Registry, name: str, **args: object) -> tools.ToolResult:
    return reg.call({"id": "c1", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}})


def weather(city: str, days: int = 1, metric: bool = True) -> str:
    """Forecast for a city.

    Args:
        city: the city name
        days: how many days ahead
        metric: Celsius if true
    """
    return f"{city}:{days}:{metric}"


def test_schema_from_type_hints_and_docstring() -> None:
    tool = from_function(weather)
    assert tool.description == "Forecast for a city."
    params = tool.parameters
    assert params["required"] == ["city"]
    assert params["properties"]["city"] == {"type": "string", "description": "the city name"}
    assert params["properties"]["days"]["type"] == "integer" and params["properties"]["days"]["default"] == 1
    assert params["additionalProperties"] is False
    assert tool.openai()["function"]["name"] == "weather"


def test_call_validates_and_runs() -> None:
    reg = Registry()
    reg.add(weather)
    assert _call(reg, "weather", city="Oslo", days=3).content == "Oslo:3:True"
    bad = _call(reg, "weather", days="many")
    assert not bad.ok and bad.content.startswith("error: bad arguments for weather")
    extra = _call(reg, "weather", city="Oslo", wind=True)
    assert not extra.ok
    not_json = reg.call({"id": "x", "function": {"name": "weather", "arguments": "{city: Oslo"}})
    assert not not_json.ok and "bad arguments" in not_json.content


def test_exceptions_and_timeouts_become_results() -> None:
    def explode(x: int) -> str:
        """Always fails."""
        raise ZeroDivisionError("boom")

    def slow(x: int) -> str:
        """Takes too long."""
        time.sleep(3)
        return "late"

    reg = Registry(timeout=0.5)
    reg.add(explode)
    reg.add(slow)
    r = _call(reg, "explode", x=1)
    assert not r.ok and "ZeroDivisionError: boom" in r.content
    t0 = time.perf_counter()
    r = _call(reg, "slow", x=1)
    assert time.perf_counter() - t0 < 2
    assert not r.ok and "did not finish within 0.5 s" in r.content
    assert r.message()["role"] == "tool" and r.message()["tool_call_id"] == "c1"


def test_unknown_disallowed_and_disabled_tools_are_refused() -> None:
    ran: list[str] = []

    def delete_everything() -> str:
        """Dangerous."""
        ran.append("yes")
        return "deleted"

    reg = Registry(disabled={"delete_everything"})
    reg.add(delete_everything)
    reg.add(weather)
    assert "not available" in _call(reg, "nope").content
    assert "not available" in _call(reg, "delete_everything").content  # disabled in config
    # the caller's allowed list is the only thing that decides; a model (or a document) naming another tool gets an error
    r = reg.call({"id": "1", "function": {"name": "weather", "arguments": '{"city": "x"}'}}, allowed=["calculator"])
    assert not r.ok and "not available" in r.content
    assert ran == []
    with pytest.raises(Exception, match="disabled"):
        reg.select(["delete_everything"])


@pytest.mark.parametrize(
    ("expr", "value"),
    [
        ("12 * (3 + 4) / 2", "42"),
        ("2 ** 10", "1024"),
        ("sqrt(16) + abs(-2)", "6"),
        ("7 // 2 + 7 % 2", "4"),
        ("-1.5 * 2", "-3"),
    ],
)
def test_calculator(expr: str, value: str) -> None:
    assert tools.calculator(expr) == value


@pytest.mark.parametrize(
    "expr",
    [
        "__import__('os').system('true')",
        "(1).__class__",
        "open('/etc/passwd')",
        "9 ** 9 ** 9",
        "[1, 2]",
        "x + 1",
        "'a' * 3",
    ],
)
def test_calculator_refuses_everything_else(expr: str) -> None:
    reg = Registry()
    reg.add(from_function(tools.calculator))
    r = _call(reg, "calculator", expression=expr)
    assert not r.ok and r.content.startswith("error: calculator failed")


def test_current_time() -> None:
    assert tools.current_time("Asia/Shanghai").endswith("+08:00")
    with pytest.raises(ValueError):
        tools.current_time("Mars/Olympus")


def test_read_file_is_confined(tmp_path) -> None:  # type: ignore[no-untyped-def]
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "note.txt").write_text("inside", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("outside", encoding="utf-8")
    (allowed / "link.txt").symlink_to(tmp_path / "secret.txt")
    reg = Registry()
    reg.add(tools.read_file_tool([str(allowed)]))
    assert _call(reg, "read_file", path="note.txt").content == "inside"
    for escape in ("../secret.txt", str(tmp_path / "secret.txt"), "link.txt"):
        r = _call(reg, "read_file", path=escape)
        assert not r.ok and "PermissionError" in r.content, escape


def test_builtin_registry_respects_config(home) -> None:  # type: ignore[no-untyped-def]
    from hearth import config

    s = config.Settings(agent={"disabled_tools": ["current_time"], "tool_timeout": 2})
    reg = tools.builtin_registry(s)
    assert {"kb_search", "kb_list_documents", "calculator"} <= set(reg.names())
    assert "current_time" not in reg.names() and "read_file" not in reg.tools
    assert reg.timeout == 2

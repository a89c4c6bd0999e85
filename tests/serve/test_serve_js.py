"""JavaScript clients against a real server: the ``openai`` npm package and the Vercel AI SDK.

The tests themselves are Node's own test runner files in ``tests/js/``; their packages are locked in
``tests/js/package-lock.json`` and installed once into ``~/.cache/hearth/npm`` (see ``npm_env``).
Keys are on, so the clients' ``Authorization`` header is checked too.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from npm_env import REPO, install, needs_node, run_node

JS = REPO / "tests" / "js"

pytestmark = [*needs_node(), pytest.mark.slow]

FESTIVAL = (
    "# The Zorblax festival\n\nThe Zorblax festival is held every March in the town of Quillton. "
    "Visitors eat blue pancakes and watch the lantern parade on the river.\n"
)


@pytest.fixture(scope="module")
def server(serve_home: Path, server_cls: Any, smol: Any) -> Iterator[Any]:
    # smol: the bundled model converted and loaded before the clients start their timers
    from hearth import config
    from hearth.kb import collection, ingest
    from hearth.serve import keys
    from hearth.serve.app import create_app

    docs = serve_home / "docs"
    docs.mkdir()
    (docs / "zorblax.md").write_text(FESTIVAL, encoding="utf-8")
    settings = config.settings()
    collection.create("festival", settings=settings)
    assert ingest.add("festival", [docs], settings=settings).failed == []
    settings.generation.temperature = 0.0
    settings.server.require_keys = True
    with server_cls(create_app(settings, ui=False, mcp=False)) as s:
        s.key = keys.create_key("js-tests")
        yield s


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test files beside a link to the cached node_modules (ES modules resolve imports from their folder)."""
    modules = install(JS) / "node_modules"
    work = tmp_path_factory.mktemp("js")
    for f in JS.glob("*.test.mjs"):
        shutil.copy(f, work)
    (work / "package.json").write_text('{"type": "module"}')
    (work / "node_modules").symlink_to(modules, target_is_directory=True)
    return work


@pytest.mark.parametrize("suite", ["openai.test.mjs", "ai-sdk.test.mjs"])
def test_js_client(suite: str, server: Any, workdir: Path) -> None:
    env = {
        "HEARTH_BASE_URL": server.url,
        "HEARTH_API_KEY": server.key,
        "HEARTH_MODEL": "smollm2",
        "HEARTH_KB": "festival",
    }
    result = run_node(["--test", "--test-reporter=spec", suite], cwd=workdir, env=env)
    assert result.returncode == 0, f"node --test {suite} failed:\n{result.stdout}\n{result.stderr}"
    assert "# fail 0" in result.stdout or "fail 0" in result.stdout, result.stdout

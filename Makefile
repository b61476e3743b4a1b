# Entry points for a fresh machine: `make demo`, `make test` (what CI runs) and `make test-fast`.
# Each sets up .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup browser demo lint test test-fast clean

$(BIN)/activate:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/activate
	# torch first, the CPU wheel pinned by constraints.txt, so that nothing pulls a multi-GB
	# CUDA build on a CPU box; the same constraints hold it there for the project's install.
	$(BIN)/pip install -q -c constraints.txt torch
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $@

setup: $(VENV)/.installed

# The browser tests (tests/integration/test_serve_browser.py) drive the system's Chromium: Debian's
# package, never a browser download. CI runs as root on a fresh machine; elsewhere install it once.
browser:
	command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium chromium-driver)

demo: setup
	$(BIN)/python -m agents.run --input examples/writing.jsonl

lint: setup
	$(BIN)/ruff check agents scorer store prompts tests bench

# Three test files at a time: most integration tests wait on processes, sockets and deadlines,
# not on the CPU; each file stays on one worker (its servers, clusters and models are shared).
test: lint browser
	$(BIN)/python -m pytest -q -n 3 --dist loadfile

# The unit tests alone: pure logic, the store, the worker on scripted seams (seconds).
test-fast: setup
	$(BIN)/python -m pytest -q tests/unit

clean:
	rm -rf $(VENV) runs

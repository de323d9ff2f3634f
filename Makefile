# Two commands for a new user: `make run` and `make test`. Both create .venv and install into it
# with the pinned versions of constraints.txt, so a fresh machine gets what was tested.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: run test lint bench bench-instructions install install-test lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# setup.py compiles these modules with mypyc; editing one of them rebuilds the install (about a minute), and the
# service refuses to start on an extension older than its source (cds_service/compiled.py).
COMPILED := $(shell grep -o '"cds_service/[a-z_/]*\.py"' setup.py | tr -d '"')

$(VENV)/.installed: $(BIN)/python pyproject.toml setup.py constraints.txt $(COMPILED)
	$(PIP_INSTALL) -e .
	touch $@

# The test extras alone: `pip install -e '.[test]'` would build the compiled modules a second time.
$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["test"]))' > $(VENV)/test-requirements.txt
	$(PIP_INSTALL) -r $(VENV)/test-requirements.txt
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

run: install
	$(BIN)/cds-service serve --host 127.0.0.1 --port 8080

lint: install-test
	$(BIN)/ruff check .

test: install-test
	$(BIN)/ruff check .
	$(BIN)/pytest

# Benchmarks (bench/run.py): in-process against orjson.loads, over HTTP with wrk (Debian's wrk, installed here when
# missing and run as root), peak memory per worker. Writes bench/RESULTS.md.
bench: install
	command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; } || true
	$(BIN)/python bench/run.py

# Instructions per request under valgrind's callgrind (bench/instructions.py): a measure that the host's load does
# not move, for telling a change's effect from noise. Debian's valgrind is installed here when missing (as root).
# Writes bench/INSTRUCTIONS.md.
bench-instructions: install
	command -v valgrind >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq valgrind >/dev/null; } || true
	$(BIN)/python bench/instructions.py

# Refresh the pins after changing pyproject.toml: installs the newest allowed versions, then freezes them.
lock: $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade -e '.[test]'
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache build cds_service/compiled-sources.json
	find . -path ./.git -prune -o -name '*.so' -print -exec rm -f {} +

# Two commands for a new user: `make run` and `make test`. Both create .venv and install into it
# with the pinned versions of constraints.txt, so a fresh machine gets what was tested.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: run test test-compiled lint bench bench-compiled bench-instructions install install-test lock clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The plain build: an editable install of the sources as they are (no compiler, no build step on edits).
$(VENV)/.installed: $(BIN)/python pyproject.toml setup.py constraints.txt
	$(PIP_INSTALL) -e .
	touch $@

# The test extras alone, so that the package itself is installed once.
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

# The release build (setup.py: the request path compiled with mypyc; needs gcc and about a minute) in place of the
# plain one, for the tests that need it: every fixture through every hook answers as the sources do interpreted,
# and a stale build is refused. The plain build is put back afterwards, whatever the tests said.
test-compiled: install-test
	CDS_SERVICE_MYPYC=1 $(PIP_INSTALL) --no-deps -e .
	$(BIN)/pytest tests/test_compiled.py tests/test_bench.py; status=$$?; \
	  $(PIP_INSTALL) --no-deps -e . && exit $$status

# Benchmarks (bench/run.py): in-process against orjson.loads, over HTTP with wrk (Debian's wrk, installed here when
# missing and run as root), peak memory per worker. Writes bench/RESULTS.md.
bench: install
	command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; } || true
	$(BIN)/python bench/run.py

# The same on the release build; the plain build is put back afterwards.
bench-compiled: install
	command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null; } || true
	CDS_SERVICE_MYPYC=1 $(PIP_INSTALL) --no-deps -e .
	$(BIN)/python bench/run.py; status=$$?; $(PIP_INSTALL) --no-deps -e . && exit $$status

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

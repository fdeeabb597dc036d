# replydesk: `make run` starts the service on embedded defaults, `make test` runs every test.
# Both set up .venv first (torch's CPU build before sentence-transformers, so pip never
# pulls a CUDA build).

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
RASA_VENV ?= $(HOME)/.cache/replydesk-rasa-venv
# Where torch comes from. PyPI's torch wheel for Linux is the CUDA build (gigabytes); on
# a machine without a local CPU build, `make run TORCH_INDEX=https://download.pytorch.org/whl/cpu`.
TORCH_INDEX ?=
PYTEST_ARGS ?=

.PHONY: run test venv lint typecheck check rasa rasa-venv bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel
	$(PIP) install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/replydesk serve --demo

rasa-venv:
	RASA_VENV=$(RASA_VENV) scripts/rasa.sh venv

rasa: rasa-venv
	RASA_VENV=$(RASA_VENV) scripts/rasa.sh run

test: $(STAMP) rasa-venv
	RASA_VENV=$(RASA_VENV) $(VENV)/bin/pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check bot handlers escalation

typecheck: $(STAMP)
	$(VENV)/bin/mypy bot

check: lint typecheck test

# Each benchmark prints its table; docs/benchmarks.md records the figures and commands.
bench: $(STAMP)
	$(PY) -m bench.ingest
	$(PY) -m bench.nlu
	$(PY) -m bench.export
	$(PY) -m bench.outbound
	$(PY) -m bench.e2e
	$(PY) -m bench.scale
	$(PY) -m bench.chaos

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache test-artifacts

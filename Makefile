# Set-up lives here so that the README's two commands work on a fresh machine:
#   make search   -> creates .venv if missing, installs CPU torch then the project, runs the main job
#   make test     -> same set-up, then the test suite
# The stamp file .venv/.installed records which pyproject.toml was installed; nothing is reinstalled
# while it is newer than pyproject.toml, so a second run starts working within seconds.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: search test setup constraints clean-venv

setup: $(STAMP)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip

# CPU torch first, so the project's torch requirement is already met and pip never pulls a CUDA build.
# Then the project with the exact versions CI last tested (constraints.txt; `make constraints` rewrites it
# from this environment).
$(STAMP): pyproject.toml constraints.txt | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -q $(TORCH)
	$(VENV)/bin/python -m pip install -q -c constraints.txt -e ".[test]"
	touch $(STAMP)

constraints: $(STAMP)
	$(VENV)/bin/python .ci/freeze-constraints > constraints.txt.new && mv constraints.txt.new constraints.txt

search: $(STAMP)
	$(VENV)/bin/igc-nas search $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q tests $(ARGS)

clean-venv:
	rm -rf $(VENV)

# `make run`: a real ORPO run of the shipped tiny preset on the local CPU, headless.
# `make test`: the whole test suite. Both install into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run ui test bench stop-ray clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/orpo-tui --preset presets/tiny-cpu.toml --no-ui

ui: $(STAMP)
	$(VENV)/bin/orpo-tui --preset presets/tiny-cpu.toml

test: $(STAMP)
	$(VENV)/bin/pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

stop-ray: $(STAMP)
	$(VENV)/bin/orpo-tui stop-ray

clean:
	rm -rf $(VENV) runs

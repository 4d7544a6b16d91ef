# Two commands set up and run everything on a fresh machine (see README):
#   make demo   - simulated car + daemon with a live view
#   make test   - the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: demo test bench clean

$(VENV)/.installed: pyproject.toml system-packages.txt
	scripts/ensure-system-packages
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/carlinkd demo $(ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest $(ARGS)

# The head-unit path in a Debian VM under qemu (tests/vm/run.py; also part of make test).
.PHONY: vm
vm: $(VENV)/.installed
	$(PY) -m tests.vm.run $(ARGS)

bench: $(VENV)/.installed
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b $(ARGS) || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info

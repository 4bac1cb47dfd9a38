# Two commands do all setup on a fresh machine: `make demo` and `make test`.
# Both create (or reuse) the virtual environment in .venv/, so the CLI is .venv/bin/intakegate.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/intakegate
STAMP := $(VENV)/.intakegate-installed
SEED_RUNS := $(addprefix examples/seed/runs/intake_bundle_,v1.json v2.json incomplete.json padded.json duplicated.json drifted.json)

.PHONY: install demo test seed-gate reports clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned to the CPU build; installing it first keeps a CUDA build out.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

seed-gate: install
	# The seed's six receipts: exits 1 because five of them are held, as the seed says.
	-$(CLI) gate --receipt examples/seed/receipt.json $(SEED_RUNS)

reports: install
	$(CLI) data check refund-intake
	$(CLI) data check banking77
	$(CLI) baselines refund-intake
	$(CLI) baselines banking77

demo: seed-gate reports

test: install
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info

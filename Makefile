# Two entry points, each creating the virtualenv when it is missing:
#   make demo   runs the main job
#   make test   runs lint, format check, the docs build and the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-min lint docs fixtures clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[torch,dev]"
	# fastai itself, for the tests that load our written .pth files into it (reference only:
	# --no-deps keeps torchvision and CUDA out; its own dependencies are listed by hand).
	$(PY) -m pip install -q --no-deps fastai==2.8.12
	$(PY) -m pip install -q "fastcore>=2.2.22" "fasttransform>=0.0.3" "fastprogress>=0.2.4" \
		"fastdownload<2" "plum-dispatch<2.10" cloudpickle pyyaml requests pillow
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m train.demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

test: lint docs
	$(PY) -m pytest -q

# The declared minimum versions of jax, flax, optax and orbax, on a subset of the suite.
MIN_VENV ?= .venv-min
test-min:
	test -x $(MIN_VENV)/bin/python || python3 -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install -q --upgrade pip
	$(MIN_VENV)/bin/python -m pip install -q -c .ci/min-versions.txt -e . pytest
	$(MIN_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_nnx.py \
		tests/test_elmo_nnx.py tests/test_awd_lstm.py tests/test_optim.py \
		tests/test_checkpointing.py tests/test_lstm.py

clean:
	rm -rf $(VENV) $(MIN_VENV) .pytest_cache site

# Two entry points, each creating the virtualenv when it is missing:
#   make demo   runs the main job
#   make test   runs lint, format check, the docs build and the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint docs fixtures clean

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

clean:
	rm -rf $(VENV) .pytest_cache site

# camsurvey: `make book` builds the HTML book, `make test` runs every check. Both set up
# .venv first (from nothing, if needed), so they are the only two commands a new user needs.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NB     ?=

export PYTHONHASHSEED := 0
export OMP_NUM_THREADS ?= 2
# The same arithmetic on every x86 CPU, so that stored outputs do not depend on the machine:
# ATen, oneDNN and MKL would otherwise pick AVX-512 kernels where they can, whose float
# rounding differs from the AVX2 kernels' (seen: a printed 1.9e-06 became 9.5e-07).
export ATEN_CPU_CAPABILITY ?= avx2
export ONEDNN_MAX_CPU_ISA ?= AVX2
export MKL_CBWR ?= AVX2

.PHONY: install book test lint unit nbval outputs clean student

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,scale]"
	touch $(STAMP)

## Execute every chapter and build the HTML book into _build/html
book: install
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

## Lint and type checks, unit tests, then nbval over every chapter notebook
test: install lint unit nbval

lint: install
	$(VENV)/bin/ruff check camsurvey tests
	$(VENV)/bin/mypy

unit: install
	$(PY) -m pytest tests -q

nbval: install
	$(PY) -m pytest -q --nbval book --sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

## Re-execute chapters in place so their stored outputs are today's (NB=book/x.ipynb for one)
outputs: install
	$(PY) -m camsurvey refresh $(NB)

## The student edition: the book without solutions, into _build/student
student: install
	$(PY) -m camsurvey student -o _build/student-src
	$(VENV)/bin/jupyter-book build _build/student-src --path-output _build/student -W -n --keep-going

clean:
	rm -rf _build runs

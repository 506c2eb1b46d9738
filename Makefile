# camsurvey: `make book` builds the HTML book, `make test` runs every check. Both set up
# .venv first (from nothing, if needed), so they are the only two commands a new user needs.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NB     ?=

export PYTHONHASHSEED := 0
# Threads (camsurvey/common.py). The thread count changes float rounding, so whatever is stored or
# compared (make outputs, nbval, the unit tests) runs with the fixed OUTPUT_THREADS = 2; where it
# changes only speed (make book), the count is the cores other work leaves free now
# (camsurvey.common.free_threads). OMP_NUM_THREADS=N given to make overrides both.
ifeq ($(origin OMP_NUM_THREADS),undefined)
export OMP_NUM_THREADS := 2
SPEED_THREADS = $(shell $(PY) -m camsurvey.common)
else
SPEED_THREADS = $(OMP_NUM_THREADS)
endif
# The same arithmetic on every x86 CPU, so that stored outputs do not depend on the machine:
# ATen, oneDNN and MKL would otherwise pick AVX-512 kernels where they can, whose float
# rounding differs from the AVX2 kernels' (seen: a printed 1.9e-06 became 9.5e-07).
export ATEN_CPU_CAPABILITY ?= avx2
export ONEDNN_MAX_CPU_ISA ?= AVX2
export MKL_CBWR ?= AVX2

SITE           := _build/html
STUDENT_SITE   := _build/student/_build/html
STORED_CONFIG  := _build/config-stored.yml

.PHONY: install book html test lint unit nbval browser outputs clean student

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,scale]"
	touch $(STAMP)

## Execute every chapter and build the HTML book into _build/html. A chapter that fails is
## reported (its page shows the traceback, and make exits non-zero) but every other page is written.
book: install
	OMP_NUM_THREADS=$(SPEED_THREADS) $(VENV)/bin/jupyter-book build . -W -n --keep-going

## The HTML book from the stored, nbval-checked outputs (nothing executed), into _build/html
html: install
	$(PY) -m camsurvey.book.site config -o $(STORED_CONFIG)
	$(VENV)/bin/jupyter-book build . --config $(STORED_CONFIG) -W -n --keep-going

## Lint and type checks, unit tests, nbval over every chapter notebook, then the HTML book and
## the student edition built and looked at in Chromium
test: install lint unit nbval browser

lint: install
	$(VENV)/bin/ruff check camsurvey tests
	$(VENV)/bin/mypy

unit: install
	$(PY) -m pytest tests -q --ignore=tests/book/test_browser.py

nbval: install
	$(PY) -m pytest -q --nbval book --sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

## Every page of both editions in Chromium (tests/book/test_browser.py); screenshots in _build/screenshots
browser: html student
	CAMSURVEY_SITE=$(SITE) CAMSURVEY_STUDENT_SITE=$(STUDENT_SITE) $(PY) -m pytest tests/book/test_browser.py -q

## Re-execute chapters in place so their stored outputs are today's (NB=book/x.ipynb for one)
outputs: install
	$(PY) -m camsurvey refresh $(NB)

## The student edition: the book without solutions, into _build/student
student: install
	$(PY) -m camsurvey student -o _build/student-src
	$(VENV)/bin/jupyter-book build _build/student-src --path-output _build/student -W -n --keep-going

clean:
	rm -rf _build runs

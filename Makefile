# camsurvey: `make book` builds the HTML book, `make test` runs every check. Both set up
# .venv first (from nothing, if needed), so they are the only two commands a new user needs.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NB     ?=

export PYTHONHASHSEED := 0
export OMP_NUM_THREADS ?= 2

.PHONY: install book test unit nbval outputs clean student

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## Execute every chapter and build the HTML book into _build/html
book: install
	$(VENV)/bin/jupyter-book build . -W -n --keep-going

## Unit tests, then nbval over every chapter notebook
test: install unit nbval

unit: install
	$(PY) -m pytest tests -q

nbval: install
	$(PY) -m pytest -q --nbval book --sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider

## Re-execute chapters in place so their stored outputs are today's (NB=book/x.ipynb for one)
outputs: install
	$(PY) -m camsurvey refresh $(NB)

## The student edition: the book without solutions, into _build/student
student: install
	$(PY) -m camsurvey.student -o _build/student-src
	$(VENV)/bin/jupyter-book build _build/student-src --path-output _build/student -W -n --keep-going

clean:
	rm -rf _build runs

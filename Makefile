# The two commands of the README. Both make their own virtual environment.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/musyq demo --out musyq-demo

test: $(STAMP)
	$(PY) -m mypy
	$(PY) -m pytest -n 2 -q

bench: $(STAMP)
	$(PY) benchmarks/bench_ard.py

clean:
	rm -rf $(VENV) musyq-demo .pytest_cache

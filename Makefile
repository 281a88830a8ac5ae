# Two commands (see README): `make main` runs the main job on the built-in data, `make test` the
# tests. Both first run dev/setup_env.sh, which builds .venv (idempotent: seconds when up to date).
PY := .venv/bin/python
OUTPUT ?= output/mini
# e.g. `make main MAIN_ARGS=--resume` (continue an interrupted run) or MAIN_ARGS=--overwrite
MAIN_ARGS ?=
STUDY_OUTPUT ?= output/study
# `make study STUDY_ARGS=--resume` continues an interrupted study
STUDY_ARGS ?=
# e.g. `make study-check STUDY_CHECK_ARGS="--output-dir output/study_check"` (kept afterwards)
STUDY_CHECK_ARGS ?=
GPU_CHECK_ARGS ?=
# pytest-xdist processes for `make test`, a test file each at a time (its module fixtures shared),
# the slowest files first (tests/conftest.py: SLOWEST_FILES); OMP_WAIT_POLICY=PASSIVE keeps two
# workers' torch threads from spinning against each other. --durations: the 15 slowest, every run
TEST_WORKERS ?= 2

.PHONY: setup main study study-check test gpu-check format lint
setup:
	bash dev/setup_env.sh

main: setup
	$(PY) tools/run_mini.py --output-dir $(OUTPUT) $(MAIN_ARGS)

# the multi-seed study (hours on 2 CPU cores); its report goes to docs/mini_study.*
study: setup
	$(PY) tools/run_mini.py --seeds 3 --output-dir $(STUDY_OUTPUT) --report-dir docs $(STUDY_ARGS)

# does this machine reproduce the study's arithmetic? The first iterations of its steps, bit for
# bit against the trace `make study` wrote (docs/mini_study_trace.json); the result goes to
# docs/study_checks/<machine class>.json, which the README lists with each check's time
study-check: setup
	$(PY) tools/study_check.py --record docs/study_checks $(STUDY_CHECK_ARGS)

# on a CUDA machine: writes docs/gpu/<device>.{json,md} (tools/update_readme.py puts them in README)
# e.g. `make gpu-check GPU_CHECK_ARGS="--budget-s 300"`; `GPU_CHECK_ARGS=--toy` runs it on a CPU
gpu-check: setup
	$(PY) tools/gpu_check.py $(GPU_CHECK_ARGS)

test: setup
	OMP_WAIT_POLICY=PASSIVE $(PY) -m pytest tests -q -p no:cacheprovider -n $(TEST_WORKERS) \
		--dist loadfile --no-loadscope-reorder --durations=15

format: setup
	$(PY) -m black -l 100 lift_det tools tests configs setup.py
	$(PY) -m isort lift_det tools tests configs setup.py

lint: setup
	$(PY) -m black -l 100 --check lift_det tools tests configs setup.py
	$(PY) -m isort --check-only lift_det tools tests configs setup.py
	$(PY) -m flake8 lift_det tools tests configs

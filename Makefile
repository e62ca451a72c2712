# Set-up and entry points. `make demo` and `make test` create the environment when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DETACH := $(BIN)/detach
PYTEST_ARGS ?=

.PHONY: demo lint test test-slow test-all install bench-data bench-hwu bench-ddp bench-quality bench-teacher bench-labels bench-predict bench-perf bench-gpu gpu-wheels clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## The whole pipeline on the built-in synthetic kitchen, then DETACH vs the random-encoder floor.
demo: $(STAMP)
	$(DETACH) fit --config configs/demo/stage1.yaml
	$(DETACH) fit --config configs/demo/stage2.yaml
	$(DETACH) fit --config configs/demo/probe.yaml
	$(DETACH) test --config configs/demo/probe.yaml --ckpt_path runs/demo/probe/checkpoints/last.ckpt
	$(DETACH) fit --config configs/demo/probe_random.yaml
	$(DETACH) test --config configs/demo/probe_random.yaml --ckpt_path runs/demo/probe_random/checkpoints/last.ckpt
	$(BIN)/python -m detach_pl.report DETACH=runs/demo/probe "random encoders (floor)=runs/demo/probe_random"

## Lint: ruff (pyflakes, pycodestyle, isort, pydocstyle Google, pyupgrade, bugbear), then mypy.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

## The default test suite (CPU, < 15 minutes on 2 cores); lint runs first.
test: $(STAMP) lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Tests marked slow (kept out of the default run).
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/python -m pytest -m "" $(PYTEST_ARGS)

## Benchmarks: print figures (never part of the test suite).
bench-ddp: $(STAMP)
	$(BIN)/python -m benchmarks.bench_ddp

bench-data: $(STAMP)
	$(BIN)/python -m benchmarks.bench_data

bench-hwu: $(STAMP)
	$(BIN)/python -m benchmarks.bench_hwu

## The paper's table on the harder kitchen (configs/benchmark): every row, 3 seeds, diagnostics.
## `make bench-quality BENCH_ARGS=--quick` checks the chain in a few minutes.
BENCH_ARGS ?=
bench-quality: $(STAMP)
	$(BIN)/python -m benchmarks.bench_quality $(BENCH_ARGS)

## Training-step speed, loss, ODC, cache and loader figures (one CPU thread) → benchmarks/perf.md.
bench-perf: $(STAMP)
	$(BIN)/python -m benchmarks.bench_perf --before benchmarks/perf_before.json --report benchmarks/perf.md

## The prepared GPU check (< 5 min on one GPU): steps/s fp32 vs bf16, memory, data overhead, syncs.
bench-gpu: $(STAMP)
	PYTHON=$(BIN)/python benchmarks/gpu_check.sh

## Wheels of the dependencies a GPU machine without network lacks (its Python has torch): carry
## .whl there and run benchmarks/gpu_check.sh, which installs them first (docs/performance.md).
gpu-wheels: $(STAMP)
	PYTHON=$(BIN)/python benchmarks/gpu_wheels.sh

## What each encoder can tell with labels (the teacher's signal), validated on 4 runs: the demo's
## world, the same world under the default lighting flicker, and the harder kitchen (its
## validation run and its 3 test runs: a check of the world that trains no alignment method).
TEACHER_ARGS := --encoders video_spatial video_temporal sensor_temporal
TEACHER_VAL := --data.init_args.val_runs '[run20,run21,run22,run23]'
bench-teacher: $(STAMP)
	$(BIN)/python -m benchmarks.bench_teacher $(TEACHER_ARGS) --output benchmarks/teacher.md -- $(TEACHER_VAL)
	$(BIN)/python -m benchmarks.bench_teacher $(TEACHER_ARGS) --output benchmarks/teacher_flicker.md \
	    -- $(TEACHER_VAL) --data.init_args.world.flicker 0.1
	$(BIN)/python -m benchmarks.bench_teacher $(TEACHER_ARGS) --config configs/benchmark/stage1.yaml \
	    --output benchmarks/teacher_benchmark.md -- --data.init_args.val_runs '[run08,run09,run10,run11]'

## How many labelled runs the probe needs, for every row of the table on the harder kitchen
## (k = 1, 2, 5, all; 3 seeds x 2 choices of runs). `make bench-labels BENCH_ARGS=--quick`: the chain.
bench-labels: $(STAMP)
	$(BIN)/python -m benchmarks.bench_labels $(BENCH_ARGS)

## Deployment: predict throughput, streaming latency (eager vs ONNX), model size, RSS.
bench-predict: $(STAMP)
	$(BIN)/python -m benchmarks.bench_predict

clean:
	rm -rf runs data/cache

# SeqRank: `make demo` runs the main job on bundled defaults, `make test` runs the test suite.
# Both create/update .venv (Python 3.11) idempotently first.
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: venv venv-dev demo test test-fast lint format bench mutation clean

venv:
	@bash tools/bootstrap.sh

venv-dev:
	@bash tools/bootstrap.sh --dev

# make demo [WEIGHTS=path/to/ckp.pth [CONFIG=configs/swinL.yaml]]: with real weights, also rank
# the photos of demo/examples.
demo: venv
	@$(PY) -m scripts.run_demo $(if $(WEIGHTS),--weights $(WEIGHTS)) $(if $(CONFIG),--config $(CONFIG))

test: venv-dev
	@$(PY) -m pytest -q $(PYTEST_ARGS)

# Everything but the end-to-end tests (subprocesses, CLI runs, the browser), in TEST_WORKERS
# pytest-xdist processes: under a minute on 2 cores (docs/TESTING.md).
TEST_WORKERS ?= 2
test-fast: venv-dev
	@$(PY) -m pytest -q -m "not e2e" -n $(TEST_WORKERS) $(PYTEST_ARGS)

lint: venv-dev
	@$(PY) -m flake8 --max-line-length 100 seqrank scripts demo online tests benchmarks train_net.py
	@$(PY) -m black --check -l 100 -q seqrank scripts demo online tests benchmarks train_net.py
	@$(PY) -m isort --check -q --profile black -l 100 seqrank scripts demo online tests benchmarks train_net.py

format: venv-dev
	@$(PY) -m black -l 100 -q seqrank scripts demo online tests benchmarks train_net.py
	@$(PY) -m isort -q --profile black -l 100 seqrank scripts demo online tests benchmarks train_net.py

bench: venv-dev
	@$(PY) -m benchmarks.bench_metrics
	@$(PY) -m benchmarks.bench_inference

# Mutation testing of the ranking decisions, metric rules and box conversions (docs/TESTING.md);
# what is mutated is set in scripts/mutation.py (TARGETS). Not part of `make test`.
mutation: venv-dev
	@$(PY) -m scripts.mutation

clean:
	rm -rf output .pytest_cache mutants

# Benchmarks of the infrastructure layer (see bench/README.md).
# Included by the main Makefile, which defines VENV, BIN and PY.

BENCH_WORKERS ?= 1,10,50,100

.PHONY: bench bench-report bench-local-cloud

$(VENV)/.bench-installed: bench/requirements.txt | setup
	$(BIN)/pip install -q -r bench/requirements.txt
	touch $@

## bench: time, API calls and memory of the infrastructure layer against the ec2_instance baseline (BENCH_WORKERS=1,10,50,100)
bench: setup $(VENV)/.bench-installed
	$(PY) -m bench.run --workers $(BENCH_WORKERS)

## bench-report: redraw bench/results/results.md and results.png from results.json
bench-report: $(VENV)/.bench-installed
	$(PY) -m bench.report bench/results

## bench-local-cloud: seconds from an empty local cloud to the app answering, and of a no-op site.yml, 1, 2 and 4 workers (root)
bench-local-cloud: setup node-images
	$(PY) -m bench.local_cloud

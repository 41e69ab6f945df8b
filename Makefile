# Two entry points: `make run` opens the app, `make test` runs the whole suite headless.
# Both create .venv on first use. torch is pinned to the CPU wheel here: an unpinned torch pulls a 5 GB CUDA build.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint bench screenshots clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m app

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

# The suite without the tests marked slow (those that start training processes): a quick check while working.
test-fast: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

bench: $(STAMP)
	$(PY) bench/bench_tokenizers.py
	QT_QPA_PLATFORM=offscreen $(PY) bench/bench_tokenization_pane.py
	$(PY) bench/bench_generation.py
	QT_QPA_PLATFORM=offscreen $(PY) bench/bench_generation_pane.py
	$(PY) bench/bench_generation_models.py
	$(PY) bench/bench_generation_load.py
	$(PY) bench/bench_training.py
	$(PY) bench/bench_training_mfu.py
	QT_QPA_PLATFORM=offscreen $(PY) bench/bench_training_ui.py
	QT_QPA_PLATFORM=offscreen $(PY) bench/bench_overlay.py

# The README's screenshots, from the real window under a virtual X server (needs xvfb-run).
screenshots: $(STAMP)
	xvfb-run -a $(PY) tools/screenshot_tokenization.py
	xvfb-run -a $(PY) tools/screenshot_training.py
	xvfb-run -a $(PY) tools/screenshot_generation.py
	xvfb-run -a $(PY) tools/screenshot_generation.py --hf
	xvfb-run -a $(PY) tools/screenshot_inside.py
	xvfb-run -a $(PY) tools/screenshot_runs.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

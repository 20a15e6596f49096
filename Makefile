# The two commands of the README. Each one sets up (or reuses) the environment in .venv first.
PYTHON := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup test demo clean-env

setup:
	@bash tools/setup_env.sh

test: setup
	$(PYTHON) -m pytest tests $(PYTEST_ARGS)

demo: setup
	$(PYTHON) tools/demo.py

clean-env:
	rm -rf .venv

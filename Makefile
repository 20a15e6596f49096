# The README's commands. Each one sets up (or reuses) the environment it needs first.
PYTHON := .venv/bin/python
CORE_PYTHON := .venv-core/bin/python
PYTEST_ARGS ?=

.PHONY: setup setup-core test test-core demo lock clean-env

setup:
	@bash tools/setup_env.sh

setup-core:
	@bash tools/setup_env.sh --core

# The whole suite, in the full environment (core and OpenMMLab layer).
test: setup
	$(PYTHON) -m pytest tests $(PYTEST_ARGS)

# The core's tests alone, in an environment without any OpenMMLab package.
test-core: setup-core
	$(CORE_PYTHON) -m pytest tests/core $(PYTEST_ARGS)

demo: setup
	$(PYTHON) tools/demo.py

# Rewrites requirements/lock.txt from the full environment as it is installed now (mmcv, installed
# from the locally built wheel, is written as its version).
lock: setup
	@{ sed -n '1,2p' requirements/lock.txt; .venv/bin/uv pip freeze --python $(PYTHON) --exclude-editable \
	    | grep -v '^uv==' | sed -E 's#^mmcv @ .*/mmcv-([0-9.]+)-.*#mmcv==\1#'; } > requirements/lock.txt.new && mv requirements/lock.txt.new requirements/lock.txt

clean-env:
	rm -rf .venv .venv-core .venv-core-custom

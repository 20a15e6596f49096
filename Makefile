# The README's commands. Each one sets up (or reuses) the environment it needs first.
PYTHON := .venv/bin/python
CORE_PYTHON := .venv-core/bin/python
PYTEST_ARGS ?=

.PHONY: setup setup-core test test-fast test-core test-core-lowest check-env demo lock clean-env

setup:
	@bash tools/setup_env.sh

setup-core:
	@bash tools/setup_env.sh --core

# The whole suite, each test once, in the environment it is written for: the OpenMMLab layer's
# tests and the integration recipes in the full environment, the core's tests in the core's own
# (no OpenMMLab package installed: the environment a core user has).
test: setup setup-core
	$(PYTHON) -m pytest tests/mm tests/integrations $(PYTEST_ARGS)
	$(CORE_PYTHON) -m pytest tests/core $(PYTEST_ARGS)

# The inner loop: everything but the slow kinds (training runs, tools in subprocesses, torchrun,
# the demo, whole-model ONNX export); `make test` and CI run them all.
FAST := not (training or subprocess or distributed or demo or export)
test-fast: setup
	$(PYTHON) -m pytest tests -m "$(FAST)" $(PYTEST_ARGS)

# Checks of the installed stack itself (the lock file's versions, mmcv's and torchvision's compiled
# operators), not of the kit.
check-env: setup
	$(PYTHON) -m pytest tools/env_checks $(PYTEST_ARGS)

# The core's tests alone, in an environment without any OpenMMLab package.
test-core: setup-core
	$(CORE_PYTHON) -m pytest tests/core $(PYTEST_ARGS)

# The core's tests at the lowest versions setup.py declares (with the huggingface_hub of timm
# 1.0.20's time: timm 1.0.20's own hub loading fails with huggingface_hub 2.4), in .venv-core-custom.
LOWEST := torch==2.4.1 torchvision==0.19.1 timm==1.0.20 huggingface_hub==0.35.3
test-core-lowest:
	@CORE_VERSIONS="$(LOWEST)" bash tools/setup_env.sh --core
	.venv-core-custom/bin/python -m pytest tests/core $(PYTEST_ARGS)

demo: setup
	$(PYTHON) tools/demo.py

# Rewrites requirements/lock.txt from the full environment as it is installed now (mmcv, installed
# from the locally built wheel, is written as its version).
lock: setup
	@{ sed -n '1,2p' requirements/lock.txt; .venv/bin/uv pip freeze --python $(PYTHON) --exclude-editable \
	    | grep -v '^uv==' | sed -E 's#^mmcv @ .*/mmcv-([0-9.]+)-.*#mmcv==\1#'; } > requirements/lock.txt.new && mv requirements/lock.txt.new requirements/lock.txt

clean-env:
	rm -rf .venv .venv-core .venv-core-custom

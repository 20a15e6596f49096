#!/usr/bin/env bash
# Creates (or refreshes) the kit's environment in .venv at the repository root.
#
# One path shared by `make test` and `make demo`:
#   1. a virtual environment with the standard torch 2.13.0 + torchvision 0.28.0 build (installed with
#      uv, which ignores a pip configuration that would pick a CPU-only torch wheel that torchvision
#      cannot load);
#   2. mmcv 2.1.0 with its compiled ops, built once into a wheel cache outside the repository
#      (about 14 minutes on 2 cores) and reused by every later environment;
#   3. the kit in editable mode with its pinned requirements and the `tests` extra.
# On a ready machine it returns in about a second (a stamp records what was installed).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
CACHE="${FASTERVIT_DENSE_CACHE:-$HOME/.cache/fastervit_dense}"
WHEELS="$CACHE/wheels"
LOGS="$CACHE/logs"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="torch==2.13.0 torchvision==0.28.0"
MMCV_VERSION="2.1.0"

die() { echo "setup: $*" >&2; exit 1; }

# Runs one named step with its output in a log; on failure names the step and shows the log's end.
step() {
    local name="$1"; shift
    local log="$LOGS/${name// /_}.log"
    echo "setup: $name ..."
    if ! "$@" >"$log" 2>&1; then
        echo "setup: step '$name' failed; the last lines of $log:" >&2
        tail -n 25 "$log" >&2
        exit 1
    fi
}

mkdir -p "$WHEELS" "$LOGS" || die "cannot create the cache folder $CACHE (set FASTERVIT_DENSE_CACHE to a writable folder)"

stamp_value="$(cat "$ROOT/setup.py" "$ROOT/tools/setup_env.sh" | sha256sum | cut -c1-16)"
stamp_file="$VENV/.fastervit_dense_setup"
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp_value" ] && "$VENV/bin/python" -c \
        "import importlib.util as u, sys; sys.exit(u.find_spec('fastervit_dense') is None)" >/dev/null 2>&1; then
    echo "setup: environment ready ($VENV)"
    exit 0
fi

command -v "$PYTHON" >/dev/null 2>&1 || die "no '$PYTHON' found: install Python 3.11 (or set PYTHON=/path/to/python3.11)"
"$PYTHON" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else 1)' \
    || die "$("$PYTHON" -c 'import sys; print("Python %d.%d" % sys.version_info[:2])') found, the stack (torch 2.13, mmcv 2.1.0) needs Python 3.10-3.12 (3.11 is tested): set PYTHON=/path/to/python3.11"

if [ ! -x "$VENV/bin/python" ]; then
    step "create virtual environment" "$PYTHON" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
if [ ! -x "$VENV/bin/uv" ]; then
    step "install uv" "$VPY" -m pip install --disable-pip-version-check -q uv
fi
UV=("$VENV/bin/uv" pip install --python "$VPY")

if ! "$VPY" -c "import torch, torchvision; assert torch.__version__.split('+')[0] == '2.13.0' and '+cpu' not in torch.__version__" >/dev/null 2>&1; then
    step "install torch and torchvision" "${UV[@]}" --reinstall-package torch $TORCH_SPEC
fi
step "install build tools" "${UV[@]}" "setuptools<82" wheel ninja

if ! "$VPY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" >/dev/null 2>&1; then
    if ! ls "$WHEELS"/mmcv-"$MMCV_VERSION"-*.whl >/dev/null 2>&1; then
        command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 \
            || die "no C++ compiler found: mmcv $MMCV_VERSION is built from source (install g++, e.g. 'apt-get install g++')"
        echo "setup: building mmcv $MMCV_VERSION with its compiled ops once (about 14 minutes on 2 cores; cached in $WHEELS)"
        step "build mmcv wheel" env MAX_JOBS="${MAX_JOBS:-$(nproc)}" MMCV_WITH_OPS=1 \
            "$VPY" -m pip wheel --disable-pip-version-check --no-build-isolation --no-deps \
            "mmcv==$MMCV_VERSION" -w "$WHEELS"
    fi
    step "install mmcv" "${UV[@]}" "$(ls "$WHEELS"/mmcv-"$MMCV_VERSION"-*.whl | head -n 1)"
fi

step "install the kit and its test requirements" "${UV[@]}" --find-links "$WHEELS" -e "$ROOT[tests]"
step "check imports" "$VPY" -c "import torchvision.ops, mmcv.ops, mmdet.models, mmseg.models, timm, fastervit_dense"

echo "$stamp_value" >"$stamp_file"
echo "setup: environment ready ($VENV)"

#!/usr/bin/env bash
# Creates (or refreshes) one of the kit's environments at the repository root.
#
#   tools/setup_env.sh          .venv: the whole verified stack (core, OpenMMLab layer, test tools)
#   tools/setup_env.sh --core   .venv-core: the core alone (torch, torchvision, timm, test tools);
#                               no OpenMMLab package is installed there
#
# Both install the exact versions of requirements/lock.txt (the set verified together), so
# `make test` and `make demo` build the same environment on every machine:
#   1. a virtual environment with the standard torch + torchvision build (installed with uv, which
#      ignores a pip configuration that would pick a CPU-only torch wheel that torchvision cannot
#      load);
#   2. (full stack) mmcv with its compiled ops, built once into a wheel cache outside the repository
#      (about 14 minutes on 2 cores) and reused by every later environment;
#   3. the kit in editable mode with its extras (the full stack: segmentation_models_pytorch and
#      transformers too, whose recipes tests/integrations runs).
# CORE_VERSIONS="torch==2.4.1 ..." with --core installs those versions instead of the lock file's, in
# .venv-core-custom (`make test-core-lowest` runs the core's tests at the lowest versions declared). On a ready machine it returns in about a second (a stamp records what was
# installed).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE=full
if [ "${1:-}" = "--core" ]; then MODE=core; fi
CORE_VERSIONS="${CORE_VERSIONS:-}"
case "$MODE" in
    full) VENV="$ROOT/.venv" ;;
    core) VENV="$ROOT/.venv-core${CORE_VERSIONS:+-custom}" ;;
esac
LOCK="$ROOT/requirements/lock.txt"
CACHE="${FASTERVIT_DENSE_CACHE:-$HOME/.cache/fastervit_dense}"
WHEELS="$CACHE/wheels"
LOGS="$CACHE/logs"
PYTHON="${PYTHON:-python3}"

die() { echo "setup: $*" >&2; exit 1; }

# Runs one named step with its output in a log; on failure names the step and shows the log's end.
step() {
    local name="$1"; shift
    local log="$LOGS/${MODE}_${name// /_}.log"
    echo "setup: $name ..."
    if ! "$@" >"$log" 2>&1; then
        echo "setup: step '$name' failed; the last lines of $log:" >&2
        tail -n 25 "$log" >&2
        exit 1
    fi
}

# The version the lock file gives a package (empty if it has none).
locked() { sed -n "s/^$1==\([^ ;]*\).*/\1/p" "$LOCK" | head -n 1; }

mkdir -p "$WHEELS" "$LOGS" || die "cannot create the cache folder $CACHE (set FASTERVIT_DENSE_CACHE to a writable folder)"
[ -f "$LOCK" ] || die "missing $LOCK: the verified versions the environment installs"

stamp_value="$(cat "$ROOT/setup.py" "$ROOT/tools/setup_env.sh" "$LOCK" <(echo "$MODE $CORE_VERSIONS") \
    | sha256sum | cut -c1-16)"
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

if [ -n "$CORE_VERSIONS" ]; then
    [ "$MODE" = core ] || die "CORE_VERSIONS applies to --core only"
    # shellcheck disable=SC2086
    step "install $CORE_VERSIONS" "${UV[@]}" $CORE_VERSIONS
    step "install the kit's core and its test requirements" "${UV[@]}" -e "$ROOT[tests]" $CORE_VERSIONS
else
    TORCH="$(locked torch)"
    TORCHVISION="$(locked torchvision)"
    if ! "$VPY" -c "import torch, torchvision; assert torch.__version__.split('+')[0] == '$TORCH' and '+cpu' not in torch.__version__ and torchvision.__version__.split('+')[0] == '$TORCHVISION'" >/dev/null 2>&1; then
        step "install torch and torchvision" "${UV[@]}" --reinstall-package torch "torch==$TORCH" "torchvision==$TORCHVISION"
    fi
    if [ "$MODE" = full ]; then
        MMCV="$(locked mmcv)"
        step "install build tools" "${UV[@]}" -c "$LOCK" "setuptools" wheel ninja
        if ! "$VPY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV'" >/dev/null 2>&1; then
            if ! ls "$WHEELS"/mmcv-"$MMCV"-*.whl >/dev/null 2>&1; then
                command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 \
                    || die "no C++ compiler found: mmcv $MMCV is built from source (install g++, e.g. 'apt-get install g++')"
                echo "setup: building mmcv $MMCV with its compiled ops once (about 14 minutes on 2 cores; cached in $WHEELS)"
                step "build mmcv wheel" env MAX_JOBS="${MAX_JOBS:-$(nproc)}" MMCV_WITH_OPS=1 \
                    "$VPY" -m pip wheel --disable-pip-version-check --no-build-isolation --no-deps \
                    "mmcv==$MMCV" -w "$WHEELS"
            fi
            step "install mmcv" "${UV[@]}" "$(ls "$WHEELS"/mmcv-"$MMCV"-*.whl | head -n 1)"
        fi
        step "install the kit, its OpenMMLab layer, the libraries of its recipes and test requirements" \
            "${UV[@]}" --find-links "$WHEELS" -c "$LOCK" -e "$ROOT[mm,tests,smp,transformers]"
    else
        step "install the kit's core and its test requirements" "${UV[@]}" -c "$LOCK" -e "$ROOT[tests]"
    fi
fi

if [ "$MODE" = full ]; then
    step "check imports" "$VPY" -c "import torchvision.ops, mmcv.ops, mmdet.models, mmseg.models, timm, fastervit_dense.mm"
else
    step "check imports" "$VPY" -c "import fastervit_dense, fastervit_dense.converters, fastervit_dense.hub, importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ('mmengine', 'mmcv', 'mmdet', 'mmseg')))"
fi

echo "$stamp_value" >"$stamp_file"
echo "setup: environment ready ($VENV)"

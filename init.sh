#!/bin/sh
# One-script set-up: environment, Cython modules, operator library, directories.
#
#   sh init.sh                               CPU MXNet (mxnet==1.9.1)
#   MXNET_PACKAGE=mxnet-cu112 sh init.sh     CUDA MXNet; the CUDA kernels are built as well
#
# Creates .venv unless a virtual environment is active (then .venv links to it), so that
# `.venv/bin/python` always names the project's interpreter. A second run with nothing changed
# finishes in seconds: every step is skipped when its inputs did not change.
set -eu

cd "$(dirname "$0")"
ROOT=$(pwd)
MXNET_PACKAGE=${MXNET_PACKAGE:-mxnet==1.9.1}
PYTHON_BIN=${PYTHON:-python3}

step() { STEP="$1"; echo "[init.sh] $1"; }
fail() { echo "[init.sh] FAILED at step: $STEP" >&2; exit 1; }
trap 'status=$?; [ $status -eq 0 ] || fail' EXIT

step "virtual environment"
if [ -n "${VIRTUAL_ENV:-}" ]; then
    if [ ! -e .venv ] || [ -L .venv ]; then
        ln -sfn "$VIRTUAL_ENV" .venv
    fi
elif [ ! -x .venv/bin/python ]; then
    "$PYTHON_BIN" -m venv .venv
fi
PY="$ROOT/.venv/bin/python"
"$PY" -c "import sys; assert sys.version_info >= (3, 9), sys.version" \
    || { echo "[init.sh] Python >= 3.9 is required" >&2; exit 1; }

step "python packages ($MXNET_PACKAGE + requirements.txt)"
STAMP=.venv/.dcn_requirements
WANT="$MXNET_PACKAGE $(cksum < requirements.txt)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    "$PY" -m pip install -q --disable-pip-version-check --upgrade pip
    "$PY" -m pip install -q --disable-pip-version-check "$MXNET_PACKAGE" -r requirements.txt
    echo "$WANT" > "$STAMP"
else
    echo "[init.sh]   up to date"
fi

step "checking MXNet"
set -- $("$PY" -c "
import mxnet as mx
print(mx.__version__, 1 if mx.runtime.Features().is_enabled('CUDA') else 0)")
WITH_CUDA=$2
echo "[init.sh]   mxnet $1, CUDA build: $WITH_CUDA"

step "Cython modules (lib/bbox, lib/nms)"
DCN_WITH_CUDA=$WITH_CUDA "$PY" setup.py -q build_ext --inplace > .venv/.dcn_build_ext.log 2>&1 \
    || { cat .venv/.dcn_build_ext.log >&2; false; }

step "operator library (operator_cxx, WITH_CUDA=$WITH_CUDA)"
JOBS=$(nproc 2>/dev/null || echo 2)
make -s -C operator_cxx -j"$JOBS" PYTHON="$PY" WITH_CUDA="$WITH_CUDA"
"$PY" -c "import lib.ops as ops; ops.load(); print('[init.sh]   ops:', ', '.join(ops.EXPECTED_OPS))"

step "directories"
mkdir -p data output model/pretrained_model

echo "[init.sh] done. Python: .venv/bin/python"

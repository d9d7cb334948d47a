#!/usr/bin/env bash
# GPU check of the CuPy backend in one run: the `gpu` tests, then bench_gpu.py
# (side by side with PyTorch CUDA), everything logged under $OUT.
#
# How to run it
#   On an NVIDIA machine whose python3 has CuPy and a CUDA build of PyTorch (the
#   device machines lent to this project do, and reach no network), from the
#   repository root:
#       bash benchmarks/gpu_check.sh
#   Results land in $OUT (default ./gpu_check_out): gpu_check.log (everything),
#   pytest_*.xml (JUnit), bench_gpu.txt and bench_gpu_engine.txt (the figures).
#   Packages npspeech imports that such an image lacks travel as wheels in .whl/
#   (gitignored; carry it with the run). Fetch them once on a machine with PyPI:
#       python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp --platform manylinux_2_28_x86_64 \
#         --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#         --platform any -d .whl soundfile==0.14.0 cffi==2.1.1 pycparser \
#         rapidfuzz==3.14.6 mpi4py mpich
#   With NPSPEECH_GPU_ONLINE=1 (a machine that reaches PyPI) the script instead
#   installs .[test,gpu] into the venv; a CUDA torch must then already be in the
#   system Python (the venv sees the system site-packages).
#
# Time budget (the timeouts; about 13.5 minutes at most on an H200 with 16 cores): venv
# and wheels ~20 s (no compilation: npspeech runs from the source tree, its Cython
# extensions optional); stage 1, tests/test_cupy_backend.py and test_cupy_rnn_fused.py
# (the kernels, the one-launch recurrent steps) <= 150 s (CUDA kernels compiled on
# first use); stage 2, bench_gpu.py <= 180 s; stage 3, tests/test_cupy_training.py
# and test_cupy_ds2.py (device-resident training of deepspeech, ds2 and ds2-stream, a
# one-rank NCCL allreduce) <= 180 s; stage 4, the other `gpu` tests
# (backend-parametrised nn, ctc, features and optim tests) <= 180 s; stage 5,
# bench_gpu.py's ds2 / ds2-stream engine steps against PyTorch and the one- against
# the two-launch recurrent step <= 120 s. Each stage has its own timeout, and a
# failing stage does not stop the next.
set -u -o pipefail  # a stage piped into tee fails when its command does
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
PYTHON=${PYTHON:-python3}
VENV=${NPSPEECH_GPU_VENV:-/tmp/npspeech-gpu-venv}
status=0

echo "== machine"
date -u; uname -m; nproc
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true

echo "== environment"
"$PYTHON" -m venv --system-site-packages "$VENV" || exit 1
# shellcheck disable=SC1091
. "$VENV/bin/activate"
if [ "${NPSPEECH_GPU_ONLINE:-0}" = 1 ]; then
    pip install -q -e '.[test,gpu]' || exit 1
else
    if ls .whl/*.whl >/dev/null 2>&1; then
        pip install -q --no-index --no-deps --no-compile .whl/*.whl || exit 1
    fi
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
python - <<'PY' || exit 1
import cupy, numpy, torch
import npspeech.backends as backends
print("cupy", cupy.__version__, "numpy", numpy.__version__, "torch", torch.__version__,
      "cuda", torch.version.cuda, torch.cuda.is_available())
backends.get_backend("cupy")  # says what is missing when it cannot run
print("cupy backend: ok")
PY

# STAGES picks what runs (default all five), so that the check fits calls of at most
# ten minutes: e.g. STAGES="1 2 5" in one call and STAGES="3 4" in the next.
STAGES=${STAGES:-1 2 3 4 5}
want() { case " $STAGES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if want 1; then
echo "== tests/test_cupy_backend.py, test_cupy_rnn_fused.py (gpu and cpu)"
timeout 150 python -m pytest tests/test_cupy_backend.py tests/test_cupy_rnn_fused.py \
    -m "gpu or not gpu" -q -p no:cacheprovider -rs \
    --junitxml="$OUT/pytest_cupy.xml" || status=1
fi

if want 2; then
echo "== bench_gpu.py"
timeout 180 python benchmarks/bench_gpu.py --steps 5 | tee "$OUT/bench_gpu.txt" \
    || status=1
fi

if want 3; then
echo "== tests/test_cupy_training.py, test_cupy_ds2.py (device-resident training,"
echo "   NCCL; gpu and cpu)"
# The NCCL test needs mpi4py (and an MPI, e.g. the mpich wheel) in .whl/; without it
# it skips saying so. The corpus-based training tests need $NPSPEECH_DATA.
timeout 180 python -m pytest tests/test_cupy_training.py tests/test_cupy_ds2.py \
    -m "gpu or not gpu" -q -p no:cacheprovider -rs \
    --junitxml="$OUT/pytest_cupy_training.xml" || status=1
fi

if want 4; then
echo "== every other gpu test"
timeout 180 python -m pytest tests -m gpu -q -p no:cacheprovider -rs \
    --ignore=tests/test_cupy_backend.py --ignore=tests/test_cupy_training.py \
    --ignore=tests/test_cupy_rnn_fused.py --ignore=tests/test_cupy_ds2.py \
    --junitxml="$OUT/pytest_gpu.xml" || status=1
fi

if want 5; then
echo "== bench_gpu.py: ds2 / ds2-stream engine steps, one vs two launches per step"
timeout 120 python benchmarks/bench_gpu.py --steps 3 \
    --only ds2-engine,ds2-stream-engine,rnn | tee "$OUT/bench_gpu_engine.txt" \
    || status=1
fi

echo "== done (status $status)"
exit $status

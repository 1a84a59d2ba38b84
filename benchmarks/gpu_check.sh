#!/usr/bin/env bash
# One command for a machine with a CUDA GPU: install the package (keeping the torch that is there),
# run the CUDA tests, then the GPU speed/memory benchmark (CUDA beside CPU, naive reference beside
# the optimised path), then the batch throughput. Run from the repository root:
#
#     bash benchmarks/gpu_check.sh                 # results also written to $OUT_DIR (default: gpu_check_out/)
#
# Works offline: if `pip install -e ".[testing]"` cannot reach an index, the package is installed
# without dependencies (the core needs only numpy, scipy, scikit-image, pillow, tifffile and torch,
# which GPU images usually have), and failing that it is used from src/ through PYTHONPATH.
# GPU_CHECK_ALLOW_CPU=1 lets the script run without a GPU (a dry run of the script itself).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT_DIR=${OUT_DIR:-gpu_check_out}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1

echo "== environment"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if ! "$PY" -c "import torch, sys; print('python', sys.version.split()[0], '| torch', torch.__version__, '| CUDA build', torch.version.cuda, '| GPU available', torch.cuda.is_available())"; then
    echo "PyTorch is not installed for $PY: install a CUDA build of PyTorch first" >&2
    exit 1
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    if [ "${GPU_CHECK_ALLOW_CPU:-0}" != "1" ]; then
        echo "PyTorch sees no CUDA GPU here: nothing to check (GPU_CHECK_ALLOW_CPU=1 runs the script anyway)" >&2
        exit 1
    fi
    echo "no CUDA GPU: dry run on the CPU (CUDA tests will be skipped)"
fi

echo "== install"
if "$PY" -m pip install -q -e ".[testing]" >"$OUT_DIR/pip.log" 2>&1; then
    echo "installed with the testing extra"
elif "$PY" -m pip install -q --no-deps --no-build-isolation -e . >>"$OUT_DIR/pip.log" 2>&1; then
    echo "offline or incomplete index: installed without dependencies (see $OUT_DIR/pip.log)"
else
    echo "pip install failed (see $OUT_DIR/pip.log): using src/ through PYTHONPATH"
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c "import napari_nevus_seg, numpy, scipy, skimage, PIL, torch; print('napari_nevus_seg', napari_nevus_seg.__version__, 'from', napari_nevus_seg.__file__)" || {
    echo "the package or one of its core dependencies cannot be imported" >&2; exit 1; }

status=0
echo "== CUDA tests"
"$PY" -m pytest -q -rs -p no:cacheprovider tests/model/test_cuda.py tests/model/test_devices.py 2>&1 | tee "$OUT_DIR/cuda_tests.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== GPU benchmark (speed and memory; quality needs the real data, absent here unless NEVUS_SEG_DATA is set)"
devices="cuda cpu"
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || devices="cpu"
quality="--skip-quality"
[ -n "${NEVUS_SEG_DATA:-}" ] && quality=""
# shellcheck disable=SC2086
"$PY" benchmarks/bench_segment.py --devices $devices $quality --repeats "${REPEATS:-20}" \
    --markdown "$OUT_DIR/benchmark_gpu.md" 2>&1 | tee "$OUT_DIR/benchmark_gpu.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== batch throughput on this device (in-process pipeline with and without refinement processes)"
"$PY" benchmarks/bench_batch.py --n "${BATCH_N:-100}" --rounds 1 --workers --device auto 2>&1 \
    | tee "$OUT_DIR/batch.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== done (exit $status); results in $OUT_DIR/"
exit $status

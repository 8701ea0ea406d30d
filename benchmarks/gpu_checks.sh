#!/usr/bin/env bash
# The GPU checks of docs/gpu.md, as one script for a machine with one CUDA GPU and a
# Python that has torch, numpy, pyarrow, pandas, tqdm and pytest (Ray is not needed):
#   bash benchmarks/gpu_checks.sh [OUT_DIR]
# Prints everything and writes it to OUT_DIR/gpu-checks.txt.
set -uo pipefail
out=${1:-out}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
# The project itself, without its dependencies (a GPU image has torch; Ray is not needed).
"$py" -c "import fno_sweeps" 2>/dev/null || "$py" -m pip install --quiet --no-deps --no-build-isolation -e . || exit 1
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$py" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"
  echo; echo "== CUDA tests: the custom gradient at n = 32, 64, 128; the GPU-readiness tests"
  "$py" -m pytest -q -p no:cacheprovider tests/test_model.py -k cuda 2>&1 | tail -3
  "$py" -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tail -3
  echo; echo "== training loop on the GPU: host syncs, shares 1, 1/2, 1/4, an oversized trial"
  "$py" benchmarks/bench_gpu.py
  echo; echo "== model benchmark, 128 x 128, batch 128, float32"
  "$py" benchmarks/bench_model.py --device cuda --resolution 128 --batch 128 --rounds 1 --min-time 2 \
    --presets w16-m4 w32-m8 w64-m16 w128-m32 --impls fno-scaling li-style
  for flag in --tf32 --bf16; do
    echo; echo "== model benchmark, 128 x 128, batch 128, $flag"
    "$py" benchmarks/bench_model.py --device cuda --resolution 128 --batch 128 --rounds 1 --min-time 2 \
      --presets w16-m4 w32-m8 w64-m16 w128-m32 --impls fno-scaling "$flag"
  done
  date -u
} 2>&1 | tee "$out/gpu-checks.txt"

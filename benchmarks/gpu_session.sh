#!/usr/bin/env bash
# Everything a lent GPU machine is asked to do, in one call (the device tool's README: one
# prepared script, a few minutes): the GPU check (issue 17 item 7), then the full-budget LeNet-5
# grid with many cells at once (issue 19 item 1), each under its own time limit.
#   bash benchmarks/gpu_session.sh OUTDIR [CHECK_SECONDS] [GRID_SECONDS]
# The machine has no lnpt install and no network: wheels of the serve extra may be carried in
# .gpu/whl and Fashion-MNIST's IDX files in .gpu/data/fashion-mnist (both ignored by git).
set -u
out=${1:?usage: gpu_session.sh OUTDIR [CHECK_SECONDS] [GRID_SECONDS]}
check_s=${2:-280}
grid_s=${3:-270}
mkdir -p "$out"
if ls .gpu/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
[ -d .gpu/data ] && export LNPT_DATA=$PWD/.gpu/data
nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
timeout -k 10 "$check_s" python3 benchmarks/gpu_check.py --device cuda 2>&1 | tee "$out/gpu_check.md"
timeout -k 30 $((grid_s + 60)) python3 benchmarks/gpu_grid.py --sweep sweeps/gpu/lenet5-full.yaml \
  --out runs/gpu-lenet5 --jobs 15 --budget-s "$grid_s" --pack "$out/gpu-lenet5.tar.gz" 2>&1 | tee "$out/gpu_grid.md"

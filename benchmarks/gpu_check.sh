#!/usr/bin/env bash
# One prepared script for a lent GPU machine (no network there; torch preinstalled).
# Usage: bash benchmarks/gpu_check.sh ARCHIVE OUT_DIR
# Runs the throughput benchmark and the full seed-depth sweep on CIFAR-10 on the GPU and
# copies the report (and the results store) to OUT_DIR.
set -u
archive=$1; out=$2
export PYTHONPATH=$PWD/src CNNLAB_HOME=/tmp/cnnlab-home PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
python3 -m cnnlab data info "folder:$archive" | tail -4
python3 benchmarks/throughput.py --device cuda --data "$archive" 2>&1 | tail -5
time timeout "${SWEEP_LIMIT:-420}" python3 -m cnnlab sweep seed-depth --data "folder:$archive" --device cuda \
    --workers "${WORKERS:-4}" --out /tmp/seed-depth-gpu > "$out/sweep.log" 2>&1
tail -25 "$out/sweep.log"
python3 -m cnnlab report /tmp/seed-depth-gpu > /dev/null  # also after a timeout: partial grid
cp /tmp/seed-depth-gpu/results.sqlite /tmp/seed-depth-gpu/report/table.md \
   /tmp/seed-depth-gpu/report/heatmap.png /tmp/seed-depth-gpu/report/acc_vs_params.png \
   /tmp/seed-depth-gpu/report/curves.png "$out/" 2>/dev/null
ls -la "$out"

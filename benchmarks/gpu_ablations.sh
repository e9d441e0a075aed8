#!/usr/bin/env bash
# The layer ablations (issue 6) on CIFAR-10 on a lent GPU, within a short device budget.
# Usage: bash benchmarks/gpu_ablations.sh ARCHIVE OUT_DIR
set -u
archive=$1; out=$2
export PYTHONPATH=$PWD/src CNNLAB_HOME=/tmp/cnnlab-home PYTHONUNBUFFERED=1
python3 -m cnnlab data prepare "folder:$archive" > /dev/null 2>&1
timeout "${REG_LIMIT:-150}" python3 -m cnnlab sweep regularization --data "folder:$archive" \
    --epochs "${REG_EPOCHS:-15}" \
    --device cuda --workers 5 --out /tmp/reg --no-report > "$out/regularization.log" 2>&1
python3 -m cnnlab report /tmp/reg > /dev/null
timeout "${DBR_LIMIT:-90}" python3 -m cnnlab sweep depth-bn-residual --reps 1 \
    --data "folder:$archive" --device cuda --workers 5 --out /tmp/dbr --no-report \
    > "$out/depth-bn-residual.log" 2>&1
python3 -m cnnlab report /tmp/dbr > /dev/null
cp /tmp/reg/report/table.md "$out/regularization-table.md"
cp /tmp/reg/report/line.png "$out/regularization-line.png"
cp /tmp/reg/report/curves.png "$out/regularization-curves.png"
cp /tmp/dbr/report/table.md "$out/depth-bn-residual-table.md"
cp /tmp/dbr/report/heatmap.png "$out/depth-bn-residual-heatmap.png"
tail -3 "$out"/*.log

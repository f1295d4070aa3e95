#!/usr/bin/env bash
# The plain-denoiser baseline at the bundled energy model's budget: the same three stages, the
# same schedules, seeds and weightings as the energy run (fmnist-28 to step 3713 on the 20000-step
# cosine schedule, 183 edm-weighted steps, then 10000 edm-weighted steps with wiener input scaling),
# with --objective denoiser. Each stage warm-starts from the previous one, exactly like the energy
# run, and every stage resumes from its own checkpoint, so re-running this script continues where
# it stopped. State lives in $ROOT (default /work/runs/plain-chain); a copy for the next session
# goes to training_state/plain-28-*/ (see training_state/README.md).
# Stop with: kill -TERM $(cat $ROOT/pid)   (the running stage writes a checkpoint on SIGTERM)
set -euo pipefail
ROOT=${ROOT:-/work/runs/plain-chain}
PY=${PY:-/work/venv/bin/python}
cd "$(dirname "$0")/.."
mkdir -p "$ROOT"
echo $$ > "$ROOT/pid"
trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 143' TERM INT
stage() {  # stage OUT STEPS LR WARMUP WEIGHT SEED STOP INIT [extra...]
  local out=$1 steps=$2 lr=$3 warmup=$4 weight=$5 seed=$6 stop=$7 init=$8
  shift 8
  if [ -f "$out/done" ]; then return 0; fi
  OMP_NUM_THREADS=1 "$PY" -m deepinv_energy.training.trainer \
    --data fashion-mnist --split train --out "$out" --objective denoiser \
    --steps "$steps" --batch-size 64 --lr "$lr" --warmup "$warmup" --schedule cosine \
    --loss-weight "$weight" --init-from "$init" \
    --width 24 --depth 2 --form residual --w-cov 1.0 --ema-decay 0.999 --grad-clip 1.0 \
    --ckpt-every 120 --log-every 10 --seed "$seed" --device cpu --threads 1 --resume \
    --stop-at "$stop" "$@" >> "$out.log" 2>&1 &
  child=$!
  wait "$child"
  touch "$out/done"
}
stage "$ROOT/s1" 20000 5e-4 500 none 0 3713 ""
stage "$ROOT/s2" 10000 2e-4 100 edm 1 183 "$ROOT/s1/checkpoint.pt"
stage "$ROOT/s3" 10000 2e-4 100 edm 2 0 "$ROOT/s2/checkpoint.pt" --input-scale wiener
echo "all stages done" >> "$ROOT/s3.log"

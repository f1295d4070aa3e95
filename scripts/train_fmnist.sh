#!/usr/bin/env bash
# Train (or resume) the bundled Fashion-MNIST energy model in the background.
# Safe to re-run: --resume continues bit-for-bit from /work/runs/fmnist/checkpoint.pt.
# Extra trainer options (e.g. STOP_AT=3000, or a baseline: EXTRA="--objective denoiser") come from the environment,
# and so do the schedule (STEPS, LR, WARMUP) and the denoising weighting (LOSS_WEIGHT, INIT_FROM for a warm start).
# Stop with: kill -TERM $(cat /work/runs/fmnist/pid)   (a checkpoint is written on SIGTERM)
set -euo pipefail
OUT=${OUT:-/work/runs/fmnist}
PY=${PY:-/work/venv/bin/python}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
OMP_NUM_THREADS=1 nohup "$PY" -m deepinv_energy.training.trainer \
  --data fashion-mnist --split train --out "$OUT" \
  --steps "${STEPS:-20000}" --batch-size 64 --lr "${LR:-5e-4}" --warmup "${WARMUP:-500}" --schedule cosine \
  --loss-weight "${LOSS_WEIGHT:-none}" --init-from "${INIT_FROM:-}" \
  --width 24 --depth 2 --form residual --w-cov 1.0 --ema-decay 0.999 --grad-clip 1.0 \
  --ckpt-every 120 --log-every 10 --seed 0 --device cpu --threads 1 --resume \
  --stop-at "${STOP_AT:-0}" ${EXTRA:-} \
  >> "$OUT/log.txt" 2>&1 &
echo $! > "$OUT/pid"
echo "started PID $(cat "$OUT/pid"); log: $OUT/log.txt, checkpoint: $OUT/checkpoint.pt"

#!/usr/bin/env bash
# The natural-gray model's CPU run (size-free EnergyUNet on 32x32 patches of the Debian wallpaper
# photos; see training_state/README.md). Resumes from $OUT/checkpoint.pt when present:
#   mkdir -p /work/runs/natural-gray2 && cp training_state/natural-gray/* /work/runs/natural-gray2/
#   bash scripts/train_natural.sh
# NPROC=2 runs it as two gloo processes (torchrun), each on one thread with half of every global
# batch: the same training to float32 round-off (tests/test_training.py::test_ddp_two_gloo_processes);
# use it only when both cores are free. Measured on 2026-12-06 (2-core machine, nothing else running):
# 0.82-0.95 s per step with NPROC=2 against 1.73 s with one process, a 1.8-2.1x speed-up.
# The photos: apt-get install -y mate-backgrounds plasma-workspace-wallpapers lomiri-wallpapers-16.04 lomiri-wallpapers-20.04
set -euo pipefail
OUT=${OUT:-/work/runs/natural-gray2}
PY=${PY:-python}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
NPROC=${NPROC:-1}
LAUNCH=("$PY")
if [ "$NPROC" -gt 1 ]; then
  LAUNCH=("$PY" -m torch.distributed.run --standalone --nproc_per_node "$NPROC")
fi
OMP_NUM_THREADS=1 nohup "${LAUNCH[@]}" -m deepinv_energy.training.trainer \
  --data natural-gray:32,50000 --split train --out "$OUT" \
  --steps "${STEPS:-60000}" --batch-size 32 --lr 3e-4 --warmup 500 --schedule cosine \
  --loss-weight edm --input-scale wiener --p-unobserved 0.5 \
  --width 32 --depth 3 --no-attention --size-free --v-floor-rel 0.001 --form residual --w-cov 1.0 --ema-decay 0.999 --grad-clip 1.0 \
  --ckpt-every 60 --log-every 10 --seed 0 --device cpu --threads 1 --resume \
  --stop-at "${STOP_AT:-0}" ${EXTRA:-} \
  >> "$OUT/log.txt" 2>&1 &
echo $! > "$OUT/pid"
echo "started PID $(cat "$OUT/pid"); log: $OUT/log.txt, checkpoint: $OUT/checkpoint.pt"

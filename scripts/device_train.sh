#!/usr/bin/env bash
# Continue the fmnist-28-wiener training on a lent GPU machine (the `device` tool), then bring the
# checkpoint back. The run keeps its configuration (batch 64, same schedule); only the device changes.
#
# Prepare here once per session (both folders are ignored via .git/info/exclude, see training_state/README.md):
#   echo /.whl/ >> .git/info/exclude; echo /.data/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl deepinv==0.5.0 natsort
#   mkdir -p .data && cp /usr/share/datasets/fashion-mnist/*.gz .data/
# Then call the device tool: run(command="bash scripts/device_train.sh", carry=[".whl", ".data"], timeout_s=590)
# and copy $files_at/checkpoint.pt, log.csv, config.json into training_state/fmnist-28-wiener/.
set -uo pipefail
BUDGET=${BUDGET:-450}   # seconds of training; SIGTERM then makes the trainer write a checkpoint
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
mkdir -p /usr/share/datasets/fashion-mnist && cp .data/*.gz /usr/share/datasets/fashion-mnist/ || exit 1
RUN=/tmp/run && mkdir -p $RUN && cp training_state/fmnist-28-wiener/* $RUN/
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout -s TERM "$BUDGET" python3 -m deepinv_energy.training.trainer \
  --data fashion-mnist --split train --out $RUN \
  --steps 10000 --batch-size 64 --lr 2e-4 --warmup 100 --schedule cosine \
  --loss-weight edm --init-from training_state/fmnist-28-edm/checkpoint.pt \
  --width 24 --depth 2 --form residual --w-cov 1.0 --ema-decay 0.999 --grad-clip 1.0 \
  --ckpt-every 500 --log-every 50 --seed 2 --input-scale wiener --device cuda --resume 2>&1 | tail -n 40
sleep 5  # the SIGTERM checkpoint
cp $RUN/checkpoint.pt $RUN/log.csv $RUN/config.json "$OUT"/ && tail -n 3 $RUN/log.csv

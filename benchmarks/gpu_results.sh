#!/usr/bin/env bash
# Reproduces docs/results.md: a default-sized synthetic set (400 train persons = 800 images, 300
# test images, 60% of them with a rotated wrist), a wrist-rotation and a mosaic version of its
# train persons, three trainings at 512 with the same number of optimisation steps, and the
# evaluation of each on the rotated-heavy test split at 2048x2048.
#
#   PHASES="synth augment bench train evaluate compare" bash benchmarks/gpu_results.sh
#
# Every phase is idempotent: versions are reused by plan key, runs continue with --resume.
set -euo pipefail
XAUG=${XAUG:-"python3 -m xaug"}
H=${XAUG_HOME:-xaug-gpu}          # the store
R=${RUNS:-runs}                   # run folders
PERSONS=${PERSONS:-400}
SYNTH_SIZE=${SYNTH_SIZE:-2048}
SIZE=${SIZE:-512}
BATCH=${BATCH:-16}
EPOCHS=${EPOCHS:-40}              # baseline: EPOCHS over the train-role images; the augmented
                                  # versions hold twice as many images and get EPOCHS/2
WIDTH=${WIDTH:-32}
VAL_EVERY=${VAL_EVERY:-5}
JOBS=${JOBS:-16}
DEVICE=${DEVICE:-cuda}
PHASES=${PHASES:-"synth augment bench train evaluate compare"}
TRAIN_RUNS=${TRAIN_RUNS:-"baseline wrist mosaic"}
has() { [[ " $PHASES " == *" $1 "* ]]; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

if has synth; then
  log synth; $XAUG synth --persons "$PERSONS" --size "$SYNTH_SIZE" --seed 0 --jobs "$JOBS" --home "$H"
fi
if has augment; then
  # the train persons only (validation persons stay out); source items included by reference
  log rotate; $XAUG rotate --pivot wrist --angles=-45,-40,-35,-30,-25,25,30,35,40,45 --per-image 1 \
    --include-source --name wrist --seed 0 --jobs "$JOBS" --quiet --home "$H"
  N=$(python3 -c "from xaug.store import Store; print(len(Store('$H').open('raw').samples(split='train', role='train', load=False)))")
  log mosaic n=$N; $XAUG mosaic --grid 2x2 --n "$N" --include-source --name mosaic --seed 0 --jobs "$JOBS" --quiet --home "$H"
fi
if has bench; then
  log bench; python3 benchmarks/bench_train.py --device cuda --sizes 512 1024 --batch 8 --steps 20 --warmup 5 \
    --json "${BENCH_JSON:-$R/bench_gpu.json}"
fi
common=(--size "$SIZE" --batch "$BATCH" --width "$WIDTH" --val-every "$VAL_EVERY" --device "$DEVICE" --home "$H" --resume)
if has train; then
  for run in $TRAIN_RUNS; do
    case $run in
      baseline) log train baseline; $XAUG train --dataset raw --run "$R/baseline" --epochs "$EPOCHS" "${common[@]}" ;;
      wrist) log train wrist; $XAUG train --dataset wrist --run "$R/wrist" --epochs $((EPOCHS / 2)) "${common[@]}" ;;
      mosaic) log train mosaic; $XAUG train --dataset mosaic --run "$R/mosaic" --epochs $((EPOCHS / 2)) "${common[@]}" ;;
    esac
  done
fi
if has evaluate; then
  for run in $TRAIN_RUNS; do
    [[ -f "$R/$run/best.pt" ]] || continue
    log evaluate $run; $XAUG evaluate --run "$R/$run" --dataset raw --split test --device "$DEVICE" --home "$H"
  done
fi
if has compare; then
  ls -d "$R"/baseline "$R"/wrist "$R"/mosaic 2>/dev/null | xargs $XAUG compare --split test --png "$R/compare.png"
fi

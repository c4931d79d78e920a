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
export NO_ALBUMENTATIONS_UPDATE=1  # no version look-up on the network at import
XAUG=${XAUG:-"python3 -m xaug"}
H=${XAUG_HOME:-xaug-gpu}          # the store
R=${RUNS:-runs}                   # run folders
PERSONS=${PERSONS:-400}
SYNTH_SIZE=${SYNTH_SIZE:-2048}
SIZE=${SIZE:-512}
BATCH=${BATCH:-16}
EPOCHS=${EPOCHS:-40}              # baseline: EPOCHS over the train-role images; the augmented
                                  # versions hold twice as many images and get EPOCHS/2.
                                  # "auto": as many as fit TRAIN_SECONDS at the benchmarked speed
TRAIN_SECONDS=${TRAIN_SECONDS:-110}
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
  log bench; python3 benchmarks/bench_train.py step --device cuda --sizes 512 1024 --batch 8 --steps ${BENCH_STEPS:-15} --warmup 5 \
    --json "${BENCH_JSON:-$R/bench_gpu.json}"
fi
if [[ $EPOCHS == auto ]]; then
  EPOCHS=$(python3 - "${BENCH_JSON:-$R/bench_gpu.json}" "$H" "$SIZE" "$TRAIN_SECONDS" <<'PY'
import json, sys
from xaug.store import Store
bench, home, size, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
ips = next(r["images_per_s"] for r in json.load(open(bench))["rows"] if r["model"].startswith("xaug") and r["size"] == size)
n = len(Store(home).open("raw").samples(split="train", role="train", load=False))
print(max(2, int(0.8 * seconds * ips / n) // 2 * 2))
PY
)
  log "EPOCHS=auto -> $EPOCHS"
fi
common=(--size "$SIZE" --batch "$BATCH" --width "$WIDTH" --val-every "$VAL_EVERY" --device "$DEVICE" --home "$H" --resume)
for run in $TRAIN_RUNS; do  # each run trained, then scored, so a cut-off call keeps whole runs
  case $run in
    baseline) data=raw; epochs=$EPOCHS ;;
    wrist) data=wrist; epochs=$((EPOCHS / 2)) ;;
    mosaic) data=mosaic; epochs=$((EPOCHS / 2)) ;;
  esac
  if has train; then
    log train $run; $XAUG train --dataset $data --run "$R/$run" --epochs "$epochs" "${common[@]}"
  fi
  if has evaluate && [[ -f "$R/$run/best.pt" && -z $(find "$R/$run" -name 'eval_*_test.json' -newer "$R/$run/best.pt") ]]; then
    log evaluate $run; $XAUG evaluate --run "$R/$run" --dataset raw --split test --device "$DEVICE" --home "$H"
  fi
done
if has compare; then
  ls -d "$R"/baseline "$R"/wrist "$R"/mosaic 2>/dev/null | xargs $XAUG compare --split test --png "$R/compare.png"
fi

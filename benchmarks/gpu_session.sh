#!/usr/bin/env bash
# The GPU measurements of the open trainer and scale-out questions, in one call that fits a short
# lease: every phase has a deadline, writes its result as soon as it is done, and a phase that
# would not finish is cut without losing the earlier ones.
#
#   OUT=gpu-out bash benchmarks/gpu_session.sh          # on a CUDA machine, in the checkout
#
# It runs xaug from the checkout (PYTHONPATH=.) with the machine's own torch. A CUDA image often
# lacks the rest of xaug's dependencies (pydantic, pydantic-core, annotated-types,
# typing-inspection, typing-extensions, shapely, albumentations, albucore, simsimd, stringzilla,
# openpyxl, et-xmlfile): install them first, from wheels where the machine has no network.
#   OUT=gpu-out PHASES="step eval ddp ablate" bash benchmarks/gpu_session.sh   # everything
#
# Phases (PHASES picks; in this order):
#   step    training-step time per model at 512 and 1024, batch 8, bf16 + channels_last
#           (benchmarks/bench_train.py step) -> $OUT/bench_step.json
#   eval    scoring images/s at 2048 px, the earlier path against the chunked on-device one
#           (benchmarks/bench_train.py eval) -> $OUT/bench_eval.json
#   ddp     `xaug train --nproc 1` (torchrun, NCCL) on a tiny set: the CUDA DDP path runs end to end
#           -> $OUT/ddp.tgz
#   ablate  the full-size ablation: synthetic 2048 px set, 512 px input, baseline / wrist rotation /
#           mosaic / combined, seed 0 first, then more seeds while time is left -> $OUT/ablate.tgz
#           (report folder, every run's config, metrics and evaluation files). Its optimiser steps
#           are chosen from the measured step speed to fit the time left (STEPS= fixes them),
#           as a multiple of the arms' steps per epoch, so that every run gets exactly as many.
#
# Locally on CPU, to check the script itself at toy scale:
#   OUT=/tmp/gs PHASES="step eval ddp ablate" DEVICE=cpu PERSONS=10 TEST_PERSONS=5 SYNTH_SIZE=256 SIZE=64 BATCH=4 STEPS=12 \
#     STEP_SIZES=64 EVAL_IMAGES=4 EVAL_PX=256 BUDGET=900 bash benchmarks/gpu_session.sh
set -uo pipefail
export NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1
T0=$(date +%s)
OUT=${OUT:?set OUT to a folder for the results}
mkdir -p "$OUT"
BUDGET=${BUDGET:-560}              # seconds for the whole script
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
XAUG=("$PY" -m xaug)
H=${XAUG_HOME:-xaug-gpu}
PERSONS=${PERSONS:-160}            # 320 training images, 256 after the validation persons
TEST_PERSONS=${TEST_PERSONS:-60}   # 120 test images, 60% with a rotated wrist
SYNTH_SIZE=${SYNTH_SIZE:-2048}
SIZE=${SIZE:-512}
BATCH=${BATCH:-16}
SEEDS=${SEEDS:-3}
STEP_SIZES=${STEP_SIZES:-"512 1024"}
EVAL_IMAGES=${EVAL_IMAGES:-100}
EVAL_PX=${EVAL_PX:-2048}
JOBS=${JOBS:-$(nproc)}
# step/eval/ddp were measured on 2026-11-29 (docs/results/h200/); a lease is best spent on the ablation
PHASES=${PHASES:-"ablate"}
has() { [[ " $PHASES " == *" $1 "* ]]; }
left() { echo $(( BUDGET - ($(date +%s) - T0) )); }
log() { echo "[$(date +%H:%M:%S) +$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/log.txt" >&2; }
# run a phase's command with the time left (minus a reserve for packing), its output in the log
phase() { local reserve=$1; shift; local t=$(( $(left) - reserve )); if (( t < 10 )); then log "skipped (no time): $*"; return 124; fi
  timeout --signal=INT --kill-after=15 "$t" "$@" 2>&1 | tee -a "$OUT/log.txt"; local rc=${PIPESTATUS[0]}; log "rc=$rc: $*"; return "$rc"; }

log "start: budget ${BUDGET}s, device $DEVICE, phases: $PHASES"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
  "$PY" -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available()); import os; print('cpus', os.cpu_count())"
} 2>&1 | tee -a "$OUT/log.txt"

if has step; then
  log "step"
  phase 300 "$PY" benchmarks/bench_train.py step --device "$DEVICE" --sizes $STEP_SIZES --batch 8 --steps "${BENCH_STEPS:-20}" \
    --warmup 5 --json "$OUT/bench_step.json"
fi
if has eval; then
  log "eval"
  phase 280 "$PY" benchmarks/bench_train.py eval --device "$DEVICE" --images "$EVAL_IMAGES" --px "$EVAL_PX" \
    --workers 8 --rounds 1 --json "$OUT/bench_eval.json"
fi
if has ddp; then
  log "ddp"
  phase 260 "${XAUG[@]}" synth --name ddp --persons 8 --test-persons 2 --size 512 --seed 0 --home "$H" -q
  phase 250 "${XAUG[@]}" train --dataset ddp --run runs-ddp/nproc1 --nproc 1 --device "$DEVICE" --epochs 3 --size 128 \
    --batch 4 --width 16 --depth 4 --home "$H" -q
  tar czf "$OUT/ddp.tgz" --exclude='*.pt' runs-ddp 2>/dev/null
fi
if has ablate; then
  log "ablate: synth"
  phase 200 "${XAUG[@]}" synth --name full --persons "$PERSONS" --test-persons "$TEST_PERSONS" --size "$SYNTH_SIZE" \
    --seed 0 --jobs "$JOBS" --home "$H"
  # the spec: mosaic n = the training images, so mosaic adds as many as wrist rotation does;
  # steps: a multiple of every arm's steps per epoch, as many as the measured speed fits
  "$PY" - "$H" "$OUT" "$PERSONS" "$TEST_PERSONS" "$SYNTH_SIZE" "$SIZE" "$BATCH" "$SEEDS" "${STEPS:-auto}" "$(left)" \
    >"$OUT/ablate-gpu.yaml" 2>>"$OUT/log.txt" <<'PY' || { log "spec failed"; exit 1; }
import json, math, sys
from pathlib import Path
from xaug.store import Store
home, out, persons, test_persons, synth_size, size, batch, seeds, steps, left = sys.argv[1:]
size, batch, left = int(size), int(batch), int(left)
n = len(Store(home).open("full").samples(split="train", role="train", load=False))
per_epoch = [max(1, k * n // batch) for k in (1, 2, 2, 3)]  # baseline, wrist, mosaic, combined
quantum = math.lcm(*per_epoch)
if steps == "auto":
    try:  # the U-Net's measured images/s at this input size; 0.7 of it for loading and logging
        rows = json.load(open(Path(out) / "bench_step.json"))["rows"]
        ips = 0.7 * next(r["images_per_s"] for r in rows if r["model"].startswith("xaug unet") and r["size"] == size)
    except (OSError, StopIteration, KeyError, ValueError):
        ips = 160.0  # the H200's training epochs ran at 160-200 images/s at 512 px, batch 16
    # time left: about 60 s of builds, then 4 runs with ~30 s each of start-up and scoring
    train_s = max(0.0, (left - 60 - 4 * 30 - 30) / 4)
    # at least 480 steps: 192 left the U-Net untrained at 512 px (test Dice 0.03, 2026-11-29), a
    # result that says nothing; better cut by the budget than finished and meaningless
    steps = int(min(1200, max(480, train_s * ips / batch)))
steps = max(quantum, int(steps) // quantum * quantum)
print(f"training images {n}, steps per epoch {per_epoch}, steps {steps}", file=sys.stderr)
print(f"""# Full-size ablation (benchmarks/gpu_session.sh wrote this): synthetic 2048 px hands, 512 px input.
name: ablate-gpu
synth: {{name: full, persons: {persons}, test_persons: {test_persons}, size: {synth_size}, seed: 0}}
baseline: {{name: baseline}}
candidates:
  - name: wrist
    pipeline:
      include_source: true
      steps:
        - {{op: rotate, pivot: wrist, angles: [-45, -35, -25, 25, 35, 45], per_image: 1}}
  - name: mosaic
    pipeline:
      include_source: true
      steps:
        - {{op: mosaic, grid: 2x2, n: {n}, beta: 0.3}}
  - name: combined
    pipeline:
      include_source: true
      steps:
        - {{op: rotate, pivot: wrist, angles: [-45, -35, -25, 25, 35, 45], per_image: 1}}
        - {{op: mosaic, grid: 2x2, n: {n}, beta: 0.3}}
seeds: {seeds}
train: {{steps: {steps}, size: {size}, batch: {batch}, aug: {{hflip: 0.0}}}}
evaluate: {{splits: [val, test]}}
bootstrap: {{resamples: 10000, confidence: 0.95, seed: 0}}""")
PY
  cat "$OUT/ablate-gpu.yaml" >>"$OUT/log.txt"
  pack() { tar czf "$OUT/ablate.tgz" --exclude='*.pt' --exclude='*.npy' ablations/ablate-gpu runs-ablate 2>/dev/null; }
  for k in $(seq 1 "$SEEDS"); do
    log "ablate: seeds 1..$k"
    phase 5 "${XAUG[@]}" ablate "$OUT/ablate-gpu.yaml" --device "$DEVICE" --seeds "$k" --out ablations/ablate-gpu \
      --runs runs-ablate --jobs "$JOBS" --home "$H"
    rc=$?
    pack
    (( rc == 0 )) || break
  done
fi
log "done"

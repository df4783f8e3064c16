#!/usr/bin/env bash
# Reproduces the shipped default models resources/models/{mixture,normal} (see their
# MODEL_CARD.md). The budget is a fixed number of steps (about one hour per model on a
# 2-core CPU at 2.1 s/step), so any device trains the same recipe.
#   DATA=../shared/data DEVICE=auto RUNS=runs bash scripts/train_default_models.sh
set -euo pipefail
DATA=${DATA:-../shared/data}
SUBSET=${SUBSET:-$DATA/nih_cxr14_subset_256.npz}
EXTRA=${EXTRA:-$DATA/nih_cxr14_extra_256.npz}
RUNS=${RUNS:-runs}
DEVICE=${DEVICE:-auto}
PY=${PY:-python3}

# M: the mixture model (normal + abnormal), the one DP-GLOW privatises with.
$PY -m glow_engine.train --data "$SUBSET" --data "$EXTRA" --val-data "$SUBSET" \
    --out "$RUNS/mixture" --resolution 128 --levels 4 --depth 8 --width 128 \
    --batch-size 16 --lr 5e-4 --warmup-steps 300 --epochs 1000 --max-steps 1700 \
    --device "$DEVICE"

# N: the normal-only model, fine-tuned from M so that both fit equally well and their
# log-likelihood ratio measures pathology rather than a difference in training.
$PY -m glow_engine.train --data "$SUBSET" --data "$EXTRA" --val-data "$SUBSET" --label 0 \
    --out "$RUNS/normal" --init-from "$RUNS/mixture/model" \
    --batch-size 16 --lr 2e-4 --warmup-steps 50 --epochs 1000 --max-steps 400 \
    --device "$DEVICE"

# Calibrate M on its own training images (METHOD.md section 2).
$PY -m glow_engine.cli calibrate "$RUNS/mixture/model" --data "$SUBSET" --data "$EXTRA" \
    --device "$DEVICE"

# The viewer's validation score distribution for this pair (glow_engine.validation_scores: the val
# images' two scores per label, numbers only). It matches the models by their content hash, so
# copy it to resources/models/reference_scores.json together with the two model folders.
$PY -m glow_engine.cli evaluate --data "$SUBSET" --split val --out "$RUNS/reference_eval" \
    --normal "$RUNS/normal/model" --mixture "$RUNS/mixture/model" --device "$DEVICE" \
    --mechanisms idldp --epx inf --check-images 2 --no-synthetic --no-progress \
    --write-reference "$RUNS/reference_scores.json"

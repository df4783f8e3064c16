#!/usr/bin/env bash
# Reproduces the shipped default models resources/models/{mixture,normal} (see their
# MODEL_CARD.md). The budget is a fixed number of steps (M: 243 minutes on the project's 2-core
# CPU, at 3-4 s/step when nothing else runs; N: 28 minutes), so any device trains the same recipe.
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
    --out "$RUNS/mixture" --resolution 256 --levels 5 --depth 8 --widths 32,96,160,192,256 \
    --batch-size 16 --lr 5e-4 --warmup-steps 300 --epochs 1000 --max-steps 1700 \
    --device "$DEVICE"

# N: the normal-only model, fine-tuned from M so that both fit equally well and their
# log-likelihood ratio measures pathology rather than a difference in training.
$PY -m glow_engine.train --data "$SUBSET" --data "$EXTRA" --val-data "$SUBSET" --label 0 \
    --out "$RUNS/normal" --init-from "$RUNS/mixture/model" \
    --batch-size 16 --lr 2e-4 --warmup-steps 50 --epochs 1000 --max-steps 400 \
    --device "$DEVICE"

# Calibrate M on its own training images (docs/method.md section 2).
$PY -m glow_engine.cli calibrate "$RUNS/mixture/model" --data "$SUBSET" --data "$EXTRA" \
    --device "$DEVICE"

# The full evaluation of this pair (docs/evaluation.md, "How to reproduce": every mechanism at
# the published budgets and at 1 and 0.1, the compressor and view baselines, the downstream CNN
# and the learned re-identification attacker; 34 minutes on a 2-core CPU at 256x256). With
# --write-reference it also writes the viewer's validation score distribution
# (glow_engine.validation_scores) and the pair's risk card (glow_engine.risk_card), numbers
# only, both bound to the two models' content hashes: copy $RUNS/reference_scores.json and
# $RUNS/risk_card.json to resources/models/ together with the two model folders.
$PY -m glow_engine.cli evaluate --data "$SUBSET" --split val --out "$RUNS/evaluation" \
    --normal "$RUNS/normal/model" --mixture "$RUNS/mixture/model" --device "$DEVICE" \
    --epx inf-noclip,inf,1000,100,10,1,0.1 --downstream --learned-attacker --no-progress \
    --write-reference "$RUNS/reference_scores.json"

#!/usr/bin/env bash
# Rebuild the bundled model (npspeech/bundled/): its acoustic model, its scorer and the
# figures `npspeech models` prints, from $NPSPEECH_DATA with the recipes' seeds.
#
#   NPSPEECH_DATA=/path/to/data recipes/bundled_model.sh [WORK_DIR]
#
# Stages (WORK_DIR defaults to runs/bundle; each stage's run folder is resumable with
# `npspeech train --resume --output-dir ...` if interrupted):
#   1. recipes/kathleen_fsdd_ds2_stream.toml, up to 40 epochs (early stopping ended the
#      bundled run after 27): streaming DeepSpeech2, dropout 0.3 after each GRU,
#      SpecAugment, batch-norm statistics recomputed over 1000 training utterances after
#      every epoch.
#   2. recipes/kathleen_fsdd_ds2_stream_aug.toml from stage 1's model: frozen batch norm,
#      SpecAugment, speed and volume perturbation, up to 40 epochs (early stopping ended
#      the bundled run after 36).
#   3. recipes/build_general_scorer.sh: the general English 4-gram mixed with the
#      training transcripts, pruned to 10 MB of ARPA text.
#   4. alpha/beta tuned on the dev sets (kathleen_arctic + fsdd), stored in the scorer.
#   5. tools/build_bundle.py: scores the model on every test set, greedy and with the
#      scorer, and writes npspeech/bundled/ (model, scorer, manifest.json).
# About 1.5 hours on one core, another training beside it (stage 1 24 min, stage 2
# 37 min, scorer ~12 min, the rest ~5 min); test transcripts reach neither model nor
# scorer.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export NPSPEECH_DATA="${NPSPEECH_DATA:-$here/../../shared/data}"
WORK="${1:-runs/bundle}"
NAME="${NAME:-en-kathleen-stream}"
DATA="$NPSPEECH_DATA"

npspeech train --config "$here/kathleen_fsdd_ds2_stream.toml" --epochs 40 \
    --output-dir "$WORK/stage1" --no-progress
npspeech train --config "$here/kathleen_fsdd_ds2_stream_aug.toml" \
    --init-from "$WORK/stage1/model.npz" --output-dir "$WORK/stage2" --no-progress
"$here/build_general_scorer.sh" "$WORK/lm"
npspeech lm tune "$WORK/lm/kathleen_mixed.npscorer" --model "$WORK/stage2/model.npz" \
    --dev "$DATA/kathleen_arctic/dev.csv" "$DATA/fsdd/dev.csv" \
    --alphas 0 0.5 1 1.5 2 2.5 3 --betas 0 1 2 3 4 5 --refine 1 --no-progress \
    -o "$WORK/scorer.npscorer"
python "$here/../tools/build_bundle.py" --name "$NAME" --default \
    --model "$WORK/stage2/model.npz" --scorer "$WORK/scorer.npscorer" \
    --description "Streaming DeepSpeech2 (two convolutions, three 320-unit one-way GRUs with dropout, 200 ms lookahead), trained on one US English speaker's read sentences and six speakers' spoken digits" \
    --recipe "recipes/kathleen_fsdd_ds2_stream.toml (27 epochs, early stop), then recipes/kathleen_fsdd_ds2_stream_aug.toml (36 epochs, early stop)" \
    --command "recipes/bundled_model.sh" \
    --scorer-summary "general English 4-gram (24.6 M words of lm_text) mixed with the training transcripts, pruned to 10 MB; alpha/beta tuned on the dev sets"

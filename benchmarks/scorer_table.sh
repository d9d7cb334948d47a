#!/usr/bin/env bash
# Decoding WER/CER of one acoustic model with each scorer: the training transcripts
# only, the general English model, and their mix (recipes/build_general_scorer.sh builds
# all three). alpha/beta are tuned for each on the dev sets, then kathleen_arctic/test.csv
# and fsdd/test.csv are decoded greedy and with each tuned scorer (beam 500, npspeech's
# default pruning). Prints one line per (test set, decoder).
#
#   NPSPEECH_DATA=/path/to/data benchmarks/scorer_table.sh MODEL [LM_DIR] [OUT_DIR]
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA="${NPSPEECH_DATA:-$here/../../shared/data}"
MODEL="$1"
LM="${2:-runs/general_lm}"
OUT="${3:-runs/scorer_table}"
mkdir -p "$OUT"
DEV=("$DATA/kathleen_arctic/dev.csv" "$DATA/fsdd/dev.csv")
TESTS=(kathleen_arctic/test.csv fsdd/test.csv)

for test in "${TESTS[@]}"; do
    printf '%-26s %-22s ' "$test" greedy
    npspeech eval --model "$MODEL" --csv "$DATA/$test" --decoder greedy \
        --no-progress --worst 0 | head -n 1
done
for lm in kathleen_train general_10MB mixed_10MB; do
    npspeech lm tune "$LM/$lm.arpa" --model "$MODEL" --dev "${DEV[@]}" \
        --alphas 0 0.5 1 1.5 2 2.5 3 --betas 0 1 2 3 4 5 --refine 1 --no-progress \
        -o "$OUT/$lm.npscorer" > "$OUT/$lm.tune.log"
    grep "^best" "$OUT/$lm.tune.log" | sed "s/^/$lm dev: /"
    for test in "${TESTS[@]}"; do
        printf '%-26s %-22s ' "$test" "beam+$lm"
        npspeech eval --model "$MODEL" --csv "$DATA/$test" --scorer "$OUT/$lm.npscorer" \
            --no-progress --worst 0 | head -n 1
    done
done

#!/usr/bin/env bash
# Rebuild the general English scorer from $NPSPEECH_DATA/lm_text, its adaptation to
# kathleen_arctic (interpolation with the training transcripts, weights tuned on dev),
# both pruned to a size budget, and their perplexity/OOV figures on dev and test.
#
#   NPSPEECH_DATA=/path/to/data recipes/build_general_scorer.sh [OUTPUT_DIR]
#
# Deterministic: the same data give byte-identical ARPA files (sorted counting, EM from
# uniform weights, pruning by a threshold found by bisection). Output defaults to
# runs/general_lm (git-ignored). Needs about 5 GB of memory and 2-3 minutes of one core
# for the general build (24.6 M words, 4-gram, singletons of orders 2-4 dropped), and
# 2 GB for the rest. Test transcripts never reach a model: the general text is filtered
# of them (lm_text/PROVENANCE.md), the in-domain model reads train.csv, the weights are
# tuned on dev.csv, and test.csv is only scored.
#
# The scorers are packaged without alpha/beta; tune them once an acoustic model exists:
#   npspeech lm tune OUT/kathleen_mixed.npscorer --model MODEL --dev $DATA/kathleen_arctic/dev.csv
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DATA="${NPSPEECH_DATA:-$here/../../shared/data}"
OUT="${1:-runs/general_lm}"
ORDER="${ORDER:-4}"
MAX_SIZE="${MAX_SIZE:-10MB}"
TEXT="$DATA/lm_text"
K="$DATA/kathleen_arctic"
mkdir -p "$OUT"

# 1. The general model: every lm_text file; 2-, 3- and 4-grams seen once are dropped
#    (lmplz --prune 0 1 1 1), which keeps the build within a few GB.
nice -n 10 npspeech lm build "$TEXT/gutenberg.txt.gz" "$TEXT/commonvoice.txt.gz" \
    "$TEXT/us_presidential.txt.gz" --order "$ORDER" --prune 0 1 1 1 --no-progress \
    -o "$OUT/general.arpa"

# 2. The in-domain model: the training transcripts only.
npspeech lm build "$K/train.csv" --order "$ORDER" -o "$OUT/kathleen_train.arpa"

# 3. The interpolation, weights tuned by EM for dev perplexity.
nice -n 10 npspeech lm mix "$OUT/general.arpa" "$OUT/kathleen_train.arpa" \
    --dev "$K/dev.csv" --no-progress -o "$OUT/mixed.arpa"

# 4. Both pruned to the size budget (bytes of ARPA text).
for model in general mixed; do
    nice -n 10 npspeech lm prune "$OUT/$model.arpa" --max-size "$MAX_SIZE" \
        --no-progress -o "$OUT/${model}_$MAX_SIZE.arpa"
done

# 5. Perplexity and OOV rate on dev and test.
for model in kathleen_train general mixed "general_$MAX_SIZE" "mixed_$MAX_SIZE"; do
    for split in dev test; do
        nice -n 10 npspeech lm eval "$OUT/$model.arpa" --text "$K/$split.csv" \
            --no-progress
    done
done

# 6. Scorer packages (alpha/beta to be tuned with `npspeech lm tune`).
npspeech lm package "$OUT/general_$MAX_SIZE.arpa" -o "$OUT/general.npscorer"
npspeech lm package "$OUT/mixed_$MAX_SIZE.arpa" -o "$OUT/kathleen_mixed.npscorer"
sha256sum "$OUT"/*.arpa "$OUT"/*.npscorer

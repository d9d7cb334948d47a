"""Every default in one place, with where it comes from.

Signal constants follow DeepSpeech 0.9 (``training/deepspeech_training/util/feeding.py``
and TensorFlow's ``AudioSpectrogram``/``Mfcc`` ops) unless a line says otherwise.
"""

from __future__ import annotations

# --- audio ---------------------------------------------------------------------------
SAMPLE_RATE = 16_000  # Hz; every DeepSpeech English model runs at 16 kHz
INT16_SCALE = 32_768.0  # int16 PCM -> float in [-1, 1): DeepSpeech divides by 2**15

# --- DeepSpeech MFCC front end --------------------------------------------------------
DS_WINDOW_SAMPLES = 512  # 32 ms at 16 kHz
DS_STEP_SAMPLES = 320  # 20 ms at 16 kHz: one feature frame every 20 ms
DS_FFT_SIZE = 512  # 257 power-spectrum bins
DS_N_MFCC = 26  # DeepSpeech's n_input
DS_N_MEL_CHANNELS = 40  # TensorFlow Mfcc's filterbank_channel_count default
DS_LOWER_FREQUENCY = 20.0  # Hz, TensorFlow Mfcc's lower_frequency_limit default
# Hz, DeepSpeech sets upper_frequency_limit = sample_rate / 2
DS_UPPER_FREQUENCY = 8000.0
DS_LOG_FLOOR = 1e-12  # TensorFlow Mfcc's kFilterbankFloor
DS_N_CONTEXT = 9  # frames of context on each side: 19 x 26 = 494 model inputs

# --- DeepSpeech2 log-spectrogram ------------------------------------------------------
DS2_WINDOW_SECONDS = 0.020  # 20 ms Hann window -> 320 samples, 161 bins at 16 kHz
DS2_STEP_SECONDS = 0.010  # 10 ms step

# --- decoding -------------------------------------------------------------------------
BEAM_WIDTH = 500  # DeepSpeech client's default beam width
# Keep the 40 likeliest classes a frame (DeepSpeech's ctc_decoder default).
CUTOFF_TOP_N = 40
# Per frame, try only the likeliest classes that together hold 99% of the probability.
# DeepSpeech tries every class (1.0). On a trained model's real outputs (kathleen test,
# 112 utterances, 3-gram LM from the training transcripts, beam 100, alpha/beta tuned
# on dev for each decoder) 0.99 with OOV_WORD_PENALTY -10 decodes 11.5x faster than
# pyctcdecode at its defaults (median per utterance), at WER 0.551 against 0.579 and
# CER 0.272 against 0.273; DeepSpeech's 1.0 with no word penalty was 6.7x, at WER
# 0.610 / CER 0.284 (benchmarks/RESULTS.md, "Decoder defaults on real outputs").
CUTOFF_PROB = 0.99
# DeepSpeech's own decoder settings, which api.Model (its emulation) keeps.
DS_BEAM_WIDTH = 500
DS_CUTOFF_TOP_N = 40
DS_CUTOFF_PROB = 1.0
# alpha and beta of DeepSpeech 0.9.3's released scorer, used when a scorer carries none.
DEFAULT_ALPHA = 0.931289039105002
DEFAULT_BETA = 1.1834137581510284

# --- training data pipeline --------------------------------------------------------
# Features kept in memory by FeatureCache: 1 GiB holds ~57 h of 26-coefficient MFCC
# frames (50 frames/s x 26 float32 = 5.2 kB/s).
FEATURE_CACHE_MEMORY_BYTES = 1 << 30
# Padded frames (T_max x B) per training batch: 32 utterances of 10 s at 50 frames/s.
FRAMES_BUDGET = 16_000
# Corpus problems spelled out one per line in a DataError; the rest are counted.
MAX_LISTED_PROBLEMS = 50

# --- prefix beam search: out-of-vocabulary words, hot-words, timings ------------------
# Natural-log penalty per letter spelled outside the vocabulary trie. DeepSpeech drops
# such prefixes outright (-inf); a finite one lets rare words through. Per letter, not
# per word, so that run-on words (which delay the LM's verdict to the end) are not
# cheaper than real words. In benchmarks/bench_decoder.py -1.0 gave a slightly lower
# CER, but narrow beams then filled with run-on spellings; -2.0 is the robust choice.
OOV_PENALTY = -2.0
# Natural-log penalty added once per out-of-vocabulary word: where it leaves the
# vocabulary trie, or where it ends on a prefix that is no word (see Scorer). Without it
# the beam keeps misspellings that the LM only scores as <unk>: on kathleen (see
# CUTOFF_PROB) -10 against 0 took test WER from 0.610 to 0.551 at equal CER, and chose
# the same alpha/beta on dev; -5 gave WER 0.569, CER 0.270.
OOV_WORD_PENALTY = -10.0
# Hot-word boost per matched character, natural log: 5 letters x 2.0 = e**10
# more likely.
HOTWORD_BOOST = 2.0
# Seconds per model output frame: DeepSpeech's 20 ms feature step.
FRAME_STEP_SECONDS = 0.02

# --- CTC loss ------------------------------------------------------------------------
# "mean" averages the per-sequence losses over the batch, as DeepSpeech trains
# (tf.reduce_mean of tf.nn.ctc_loss); "mean_per_target" is PyTorch's "mean".
CTC_REDUCTIONS = ("mean", "sum", "none", "mean_per_target")
CTC_REDUCTION = "mean"
CTC_ZERO_INFINITY = False  # impossible alignments report inf (and a warning) by default

# --- language-model tooling (npspeech lm) ---------------------------------------------
LM_ORDER = 5  # n-gram order of `npspeech lm build`; DeepSpeech 0.9's scorer is a 5-gram
# lmplz's --discount_fallback values for D1, D2, D3+ when count-of-counts are
# degenerate (tiny or artificial corpora), where Chen & Goodman's estimate is undefined
# or out of range.
KN_FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
# Alpha/beta search grid of `npspeech lm tune`: DeepSpeech's lm_optimizer searches
# alpha and beta in [0, 5]; 11 points a side is a step of 0.5.
TUNE_ALPHA_RANGE = (0.0, 5.0)
TUNE_BETA_RANGE = (0.0, 5.0)
TUNE_GRID_POINTS = 11
TUNE_BEAM_WIDTH = 100  # beam width while tuning; smaller than decoding's 500 for speed

# --- acoustic front end ---------------------------------------------------------------
# Mel scale m = 1127 ln(1 + f / 700): TensorFlow's Mfcc and HTK
# (= 2595 log10(1 + f / 700)).
MEL_HIGH_FREQUENCY_Q = 1127.0
MEL_BREAK_FREQUENCY_HZ = 700.0
# Per-utterance and global normalisation divide by max(std, this): a constant
# feature (digital silence, a mel channel with no FFT bin) stays finite instead of
# dividing by 0.
NORMALIZE_STD_FLOOR = 1e-6

# --- neural layers (npspeech.nn) ------------------------------------------------------
# The convolution unfolds its input (im2col) a slice of output frames at a time so that
# the patch matrix stays near this size: DS2's second layer (32 x 21 x 11 patch values
# per output position) would otherwise need gigabytes for one batch.
CONV_CHUNK_BYTES = 64 * 2**20
# PyTorch's default weight of the newest batch in running stats
BATCH_NORM_MOMENTUM = 0.1
BATCH_NORM_EPS = 1e-5  # PyTorch's BatchNorm/LayerNorm default

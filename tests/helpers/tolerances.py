"""Every numerical tolerance the tests use, in one place, with its reason."""

# Finite differences in float64 with step 1e-6 (central) leave ~1e-9 truncation error on
# smooth functions; 1e-6 relative leaves room for sums over many terms.
GRADCHECK_RTOL = 1e-6
GRADCHECK_ATOL = 1e-8
GRADCHECK_EPS = 1e-6

# Parity with PyTorch on identical weights (the contract).
PARITY_ATOL_FLOAT64 = 1e-5
PARITY_RTOL_FLOAT32 = 1e-4
PARITY_ATOL_FLOAT32 = 1e-5
# A convolution output sums C x kt x kf products of terms up to ~25 in magnitude;
# PyTorch and BLAS add them in different orders (~6e-8 relative each), which leaves up
# to ~1e-4 absolute where the terms cancel (1.2e-5 seen with OpenBLAS's Haswell GEMM).
CONV_PARITY_ATOL_FLOAT32 = 5e-5

# Accelerated kernel against the NumPy reference on the same inputs.
BACKEND_RTOL_FLOAT64 = 1e-10
BACKEND_ATOL_FLOAT64 = 1e-12
BACKEND_RTOL_FLOAT32 = 1e-5
BACKEND_ATOL_FLOAT32 = 1e-5

# A whole model run on one sequence alone vs. inside a padded float32 batch: the same
# arithmetic, but BLAS may block a (T*B, F) product differently, so ulps differ.
MODEL_PADDING_ATOL_FLOAT32 = 1e-5

# Dropout keep fraction over 10,000 Bernoulli draws: the standard deviation is ~0.0043
# at rate 0.25, so 0.02 is more than four of them.
DROPOUT_RATE_ATOL = 0.02

# Language models. Sums of P(w | h) over the vocabulary in float64: ~1e-15 per term, but
# backoff evaluation goes through log10 and back, so 1e-9 over a few hundred words.
LM_SUM_ATOL = 1e-9
# An ARPA file keeps nine significant digits: log10 values down to -99 differ by < 1e-7.
ARPA_TEXT_ATOL = 1e-7
# KenLM stores and sums log10 values in float32: ~1e-7 relative per term, a sentence of
# a few dozen terms of magnitude ~3 stays well within 1e-4.
KENLM_SCORE_ATOL = 1e-4

# Prefix beam search: compiled against the Python oracle, and against brute-force
# sums of alignment probabilities. Both sides add the same float64 terms; 1e-4 is
# the contract.
DECODER_SCORE_ATOL = 1e-4

# Acoustic front end. The numba backend computes in float32 (FFT, spectrum, filterbank,
# DCT), the reference in the input's dtype; their difference is a few float32 ulps of
# the largest feature value (measured <= 6e-7 of it on LDC93S1 and ARCTIC), so features
# are compared with an absolute tolerance of this fraction of the largest |value|.
FEATURES_FLOAT32_SCALED_ATOL = 4e-6
# The float64 reference against TensorFlow 2.21's AudioSpectrogram + Mfcc (measured
# 1.8e-6 on LDC93S1) and against TF values quoted to 5 decimals (rounding adds 5e-6).
FEATURES_TF_ATOL_FLOAT64 = 2e-5
# The float32 production path against the same TF values (measured 2.3e-5 on
# values ~50).
FEATURES_TF_ATOL_FLOAT32 = 1e-4
# Resampled LDC93S1 (8 kHz and 44.1 kHz stereo files) against the 16 kHz original:
# minimum correlation after band-limiting both to what the 8 kHz file can hold.
RESAMPLE_MIN_CORRELATION = 0.99

# CTC: float32 logits through the float64-accumulating kernels against the same logits
# in float64; only the input rounding (~6e-8 relative) separates them, even at T = 3000.
CTC_FLOAT32_RTOL = 1e-5
CTC_FLOAT32_ATOL = 1e-6
# The log of single spectrum bins (log-power spectrogram): a float32 FFT leaves noise of
# ~1e-7 of a frame's largest magnitude in every bin, so bins 60-70 dB below the peak
# differ by up to ~1e-3 in log power from a float64 FFT (measured 5e-4).
LOG_POWER_ATOL_FLOAT32 = 2e-3

# Recurrent layers: a batch against each sequence alone, or one chunk against the whole,
# differ only by BLAS summation order over differently shaped GEMMs (float64).
RNN_INVARIANCE_ATOL = 1e-10

"""Every default in one place, with where it comes from.

Signal constants follow DeepSpeech 0.9 (``training/deepspeech_training/util/feeding.py``
and TensorFlow's ``AudioSpectrogram``/``Mfcc`` ops) unless a line says otherwise.
"""

from __future__ import annotations

# --- audio ---------------------------------------------------------------------------
SAMPLE_RATE = 16_000  # Hz; every DeepSpeech English model runs at 16 kHz
INT16_SCALE = 32_768.0  # int16 PCM -> float in [-1, 1): DeepSpeech divides by 2**15

# --- DeepSpeech MFCC front end -----------------------------------------------------------
DS_WINDOW_SAMPLES = 512  # 32 ms at 16 kHz
DS_STEP_SAMPLES = 320  # 20 ms at 16 kHz: one feature frame every 20 ms
DS_FFT_SIZE = 512  # 257 power-spectrum bins
DS_N_MFCC = 26  # DeepSpeech's n_input
DS_N_MEL_CHANNELS = 40  # TensorFlow Mfcc's filterbank_channel_count default
DS_LOWER_FREQUENCY = 20.0  # Hz, TensorFlow Mfcc's lower_frequency_limit default
DS_UPPER_FREQUENCY = 8000.0  # Hz, DeepSpeech sets upper_frequency_limit = sample_rate / 2
DS_LOG_FLOOR = 1e-12  # TensorFlow Mfcc's kFilterbankFloor
DS_N_CONTEXT = 9  # frames of context on each side: 19 x 26 = 494 model inputs

# --- DeepSpeech2 log-spectrogram -------------------------------------------------------
DS2_WINDOW_SECONDS = 0.020  # 20 ms Hann window -> 320 samples, 161 bins at 16 kHz
DS2_STEP_SECONDS = 0.010  # 10 ms step

# --- decoding --------------------------------------------------------------------------
BEAM_WIDTH = 500  # DeepSpeech client's default beam width
CUTOFF_TOP_N = 40  # DeepSpeech's ctc_decoder default: keep the 40 likeliest classes a frame
CUTOFF_PROB = 1.0  # DeepSpeech's default: no cumulative-probability pruning
# alpha and beta of DeepSpeech 0.9.3's released scorer, used when a scorer carries none.
DEFAULT_ALPHA = 0.931289039105002
DEFAULT_BETA = 1.1834137581510284

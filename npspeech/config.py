"""Configuration as frozen dataclasses, with a dict/JSON/TOML round-trip.

Each dataclass documents its fields with a comment and gives every field a default, so a
recipe only states what it changes. ``from_dict`` rejects unknown keys by name, so a
typo in a recipe is an error rather than a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, TypeVar

from . import constants as C
from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

ConfigT = TypeVar("ConfigT")


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """How audio becomes model inputs; the defaults are DeepSpeech 0.9's MFCC."""

    # "mfcc" (DeepSpeech), "spectrogram" (DeepSpeech2 log-spectrogram) or "fbank"
    # (log-mel filterbank).
    kind: str = "mfcc"
    sample_rate: int = C.SAMPLE_RATE  # Hz; audio is resampled to this on load
    window_ms: float = 32.0  # analysis window; 512 samples at 16 kHz
    step_ms: float = 20.0  # hop between frames; 320 samples at 16 kHz
    # FFT size; None = the window length rounded up to a power of 2 (mfcc, fbank: TF's
    # AudioSpectrogram) or the window length itself (spectrogram: DS2's 161 bins).
    n_fft: int | None = None
    # "hann_periodic" (TF), "hann_symmetric" (numpy.hanning) or "hamming" (periodic)
    window: str = "hann_periodic"
    n_mfcc: int = C.DS_N_MFCC  # cepstral coefficients kept (mfcc)
    n_mels: int = C.DS_N_MEL_CHANNELS  # mel channels (mfcc, fbank)
    lower_frequency: float = C.DS_LOWER_FREQUENCY  # Hz, lowest mel edge
    upper_frequency: float = C.DS_UPPER_FREQUENCY  # Hz, highest mel edge
    # log(max(x, floor)) for mfcc and fbank, and for the spectrogram's "log" mode
    log_floor: float = C.DS_LOG_FLOOR
    # spectrogram only: "log1p" (log(1 + x)) or "log" (with the floor)
    log_mode: str = "log1p"
    # "none", "utterance" (per-utterance mean/variance) or "global" (corpus statistics)
    normalize: str = "none"
    # frames of context each side (DeepSpeech uses 9; the model preset sets it)
    n_context: int = 0

    @property
    def window_samples(self) -> int:
        """Window length in samples (512 at 16 kHz and 32 ms)."""
        return int(round(self.sample_rate * self.window_ms / 1000.0))

    @property
    def step_samples(self) -> int:
        """Hop in samples (320 at 16 kHz and 20 ms)."""
        return int(round(self.sample_rate * self.step_ms / 1000.0))

    @property
    def fft_size(self) -> int:
        """``n_fft``; by default the window length (spectrogram) or the next
        power of two.
        """
        if self.n_fft is not None:
            return self.n_fft
        if self.kind == "spectrogram":
            return self.window_samples
        return 1 << (self.window_samples - 1).bit_length()


def to_dict(config: Any) -> dict[str, Any]:
    """A plain dict of a config dataclass (nested dataclasses become dicts)."""
    return dataclasses.asdict(config)


def from_dict(
    cls: type[ConfigT], values: dict[str, Any], *, where: str = ""
) -> ConfigT:
    """Build ``cls`` from ``values``; unknown keys are an error naming ``where``.

    Nested dataclass fields accept a dict. Missing keys take the field's default.
    """
    if not isinstance(values, dict):
        raise ConfigError(
            f"{where or cls.__name__}: expected a table, got {type(values).__name__}"
        )
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where or cls.__name__}: unknown setting(s) {', '.join(unknown)}; "
            f"known: {', '.join(fields)}"
        )
    kwargs = {}
    for name, value in values.items():
        default = fields[name].default
        nested = type(default) if dataclasses.is_dataclass(default) else None
        if nested is None and fields[name].default_factory is not dataclasses.MISSING:
            produced = fields[name].default_factory()
            nested = type(produced) if dataclasses.is_dataclass(produced) else None
        if nested is not None and isinstance(value, dict):
            value = from_dict(nested, value, where=f"{where}.{name}" if where else name)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)


def to_json(config: Any) -> str:
    """JSON text of a config dataclass."""
    return json.dumps(to_dict(config), indent=2, sort_keys=True)


def from_json(cls: type[ConfigT], text: str) -> ConfigT:
    """Inverse of :func:`to_json`."""
    return from_dict(cls, json.loads(text))


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file, with an error naming the file and line on bad syntax."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None


# --- model, training and decoding -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """An architecture and its sizes. Presets live in ``npspeech/presets/*.toml``.

    ``deepspeech`` reads only the fields up to ``init_scheme``; ``ds2`` and
    ``ds2-stream`` read the convolution, recurrent and lookahead fields as well.
    """

    # "deepspeech" (DeepSpeech 0.9), "ds2" (DeepSpeech2) or "ds2-stream" (one-way DS2).
    architecture: str = "deepspeech"
    n_hidden: int = 2048  # width of every hidden layer (DeepSpeech's n_hidden)
    n_context: int = C.DS_N_CONTEXT  # frames stacked on each side (deepspeech only)
    relu_clip: float = 20.0  # ceiling of the clipped ReLU and the hardtanh
    dropout: float = 0.05  # after dense layers 1, 2, 3, 5 (deepspeech); each RNN (ds2)
    forget_bias: float = 0.0  # LSTM forget-gate bias at init (DeepSpeech 0.9 uses 0)
    init_scheme: str = "glorot_uniform"  # dense init: "glorot_uniform" or "pytorch"
    # DeepSpeech2: (time, frequency) convolutions, each with batch norm and hardtanh.
    conv_channels: tuple[int, ...] = (32, 32)  # output channels of each convolution
    conv_kernels: tuple[tuple[int, int], ...] = ((11, 41), (11, 21))  # (time, freq.)
    conv_strides: tuple[tuple[int, int], ...] = ((2, 2), (1, 2))  # (time, frequency)
    conv_padding: tuple[tuple[int, int], ...] = ((5, 20), (5, 10))  # (time, frequency)
    rnn_kind: str = "gru"  # recurrent cell of ds2: "gru", "lstm" or "rnn"
    rnn_layers: int = 5  # stacked recurrent layers (ds2)
    lookahead_context: int = 20  # future frames the lookahead reads (ds2-stream)
    batch_norm_momentum: float = 0.1  # running-statistics update (PyTorch's convention)

    def __post_init__(self) -> None:
        # TOML and JSON give lists; tuples keep the config hashable and comparable.
        object.__setattr__(self, "conv_channels", tuple(self.conv_channels))
        for name in ("conv_kernels", "conv_strides", "conv_padding"):
            pairs = tuple(tuple(pair) for pair in getattr(self, name))
            object.__setattr__(self, name, pairs)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a training run reads: data, model, optimisation, checkpoints.

    A recipe is a TOML file with ``[train]``, ``[model]``, ``[features]`` and optionally
    ``[augment]`` tables; ``[model]`` and ``[features]`` fill the nested configs here.
    """

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    features: FeatureConfig = dataclasses.field(default_factory=FeatureConfig)
    # data
    train_csv: tuple[str, ...] = ()  # DeepSpeech CSVs of the training set
    dev_csv: tuple[str, ...] = ()  # dev set CSVs (selection, early stop, schedule)
    alphabet: str = ""  # alphabet.txt; required unless initialising from a model file
    skip_bad_rows: bool = False  # skip (with a warning) rows that fail validation
    feature_cache_dir: str = ""  # on-disk feature cache; "" keeps them in memory only
    batch_frames: int = 20_000  # padded frames per batch (T_max x B) budget
    max_batch_size: int = 32  # utterances per batch at most (0 = no limit)
    sortagrad: bool = True  # shortest utterances first in epoch 0 (DS2's SortaGrad)
    # optimisation
    epochs: int = 75  # upper bound on epochs
    learning_rate: float = 1e-3  # Adam step size (DeepSpeech's default)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    weight_decay: float = 0.0  # AdamW-style decoupled decay when > 0
    clip_norm: float = 400.0  # global gradient-norm clip (0 = off); DS2 clips at 400
    plateau_factor: float = 0.5  # multiply the rate by this when dev loss plateaus
    plateau_patience: int = 2  # epochs without dev improvement before reducing
    min_learning_rate: float = 1e-6  # the plateau schedule never goes below this
    # stopping
    early_stop_metric: str = "loss"  # "loss" or "wer" on the dev set
    early_stop_patience: int = 5  # epochs without dev improvement to stop (0 = off)
    target_dev_wer: float = -1.0  # stop as soon as dev WER <= this (-1 = never)
    # Batch-norm running statistics recomputed before each dev evaluation from this many
    # training utterances with the epoch's final weights (0 = keep the running
    # averages); see npspeech/batch_norm_stats.py. Only networks with batch norm.
    batch_norm_utterances: int = 0
    # Batch norms normalise with their stored statistics in training too, and keep them:
    # for training further a model whose statistics were recomputed (above), so that
    # training and evaluation normalise alike. Excludes batch_norm_utterances.
    freeze_batch_norm: bool = False
    # run
    seed: int = 4568  # seeds initialisation, shuffling, augmentation and dropout
    output_dir: str = "runs/npspeech"  # checkpoints, log, plot and the final model file
    checkpoint_minutes: float = 10.0  # write the `last` checkpoint at least this often
    backend: str = "numba"  # "numpy", "numba" or "cupy"
    progress: bool = True  # tqdm progress bar
    # transfer learning
    init_from: str = ""  # model file to start from ("" = fresh initialisation)
    reinit_layers: int = 0  # re-initialise this many top layers of init_from
    description: str = ""  # free text stored in the model file's training record


@dataclasses.dataclass(frozen=True)
class DecodeConfig:
    """How log-probabilities become text."""

    decoder: str = "greedy"  # "greedy" or "beam"
    beam_width: int = C.BEAM_WIDTH
    cutoff_top_n: int = C.CUTOFF_TOP_N
    cutoff_prob: float = C.CUTOFF_PROB
    scorer: str = ""  # KenLM .scorer / ARPA / binary for the beam decoder ("" = none)
    alpha: float | None = None  # LM weight; None = the scorer's own
    beta: float | None = None  # word insertion bonus; None = the scorer's own
    hotwords: tuple[str, ...] = ()  # "word:boost" pairs for the beam decoder


# Augmentation settings live beside the functions that apply them (with NumPy and
# SciPy, which the configuration alone must not import: `npspeech --help` reads it);
# re-exported on first use so a recipe's [augment] table can be read with
# from_dict(AugmentConfig, ...) from here.
def __getattr__(name: str):
    if name == "AugmentConfig":
        from .augment import AugmentConfig

        return AugmentConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

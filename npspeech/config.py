"""Configuration as frozen dataclasses, with a dict/JSON/TOML round-trip.

Each dataclass documents its fields with a comment and gives every field a default, so a
recipe only states what it changes. ``from_dict`` rejects unknown keys by name, so a typo
in a recipe is an error rather than a silently ignored setting.
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
    """How audio becomes model inputs. The defaults are DeepSpeech 0.9's MFCC front end."""

    # "mfcc" (DeepSpeech), "spectrogram" (DeepSpeech2 log-spectrogram) or "fbank" (log-mel).
    kind: str = "mfcc"
    sample_rate: int = C.SAMPLE_RATE  # Hz; audio is resampled to this on load
    window_ms: float = 32.0  # analysis window; 512 samples at 16 kHz
    step_ms: float = 20.0  # hop between frames; 320 samples at 16 kHz
    n_fft: int | None = None  # FFT size; None = the window length rounded up to a power of 2
    window: str = "hann_periodic"  # "hann_periodic" (TF), "hann_symmetric" or "hamming"
    n_mfcc: int = C.DS_N_MFCC  # cepstral coefficients kept (mfcc)
    n_mels: int = C.DS_N_MEL_CHANNELS  # mel channels (mfcc, fbank)
    lower_frequency: float = C.DS_LOWER_FREQUENCY  # Hz, lowest mel edge
    upper_frequency: float = C.DS_UPPER_FREQUENCY  # Hz, highest mel edge
    log_floor: float = C.DS_LOG_FLOOR  # log(max(x, floor)) for mfcc/fbank, and "log" mode
    log_mode: str = "log1p"  # spectrogram only: "log1p" (log(1 + x)) or "log" (with floor)
    normalize: str = "none"  # "none", "utterance" (per-utterance mean/var) or "global"
    n_context: int = 0  # frames of context each side (DeepSpeech uses 9; the model preset sets it)

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
        """``n_fft``, or the window length rounded up to a power of two."""
        if self.n_fft is not None:
            return self.n_fft
        return 1 << (self.window_samples - 1).bit_length()


def to_dict(config: Any) -> dict[str, Any]:
    """A plain dict of a config dataclass (nested dataclasses become dicts)."""
    return dataclasses.asdict(config)


def from_dict(cls: type[ConfigT], values: dict[str, Any], *, where: str = "") -> ConfigT:
    """Build ``cls`` from ``values``; unknown keys are an error naming ``where``.

    Nested dataclass fields accept a dict. Missing keys take the field's default.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{where or cls.__name__}: expected a table, got {type(values).__name__}")
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

"""Typed errors. Every error a user can cause names the file, row or argument at fault.

The CLI catches :class:`NpspeechError` and prints its message with a non-zero exit code;
anything else reaching the top level is a bug and keeps its traceback.
"""

from __future__ import annotations


class NpspeechError(Exception):
    """Base class of every error npspeech raises on purpose."""


class AudioError(NpspeechError):
    """Audio that is missing, unreadable, corrupt, empty, too short or not finite."""


class AlphabetError(NpspeechError):
    """An alphabet file or a text that the alphabet cannot represent."""


class DataError(NpspeechError):
    """A corpus CSV or one of its rows is unusable."""


class ConfigError(NpspeechError):
    """A recipe, preset or option has a value outside what it accepts."""


class ModelFileError(NpspeechError):
    """A model file that is truncated, foreign, corrupt or written by a
    newer version.
    """


class ScorerError(NpspeechError):
    """A language model or scorer package that cannot be read."""


class DecoderError(NpspeechError):
    """Decoder input of the wrong shape, dtype or contents."""


class OutputError(NpspeechError):
    """An output file or folder that cannot be written."""


class ExtensionMissingError(NpspeechError):
    """A compiled extension was required (``NPSPEECH_REQUIRE_EXT=1``) but
    is not built.
    """

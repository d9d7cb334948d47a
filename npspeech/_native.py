"""Loads the compiled extensions in ``npspeech._ext`` with one policy for all of them.

A missing extension (a source checkout that was never built) makes npspeech fall back to
its pure-Python paths with a warning. With ``NPSPEECH_REQUIRE_EXT=1`` (set in CI) it is
an error instead, so a broken build can never pass silently.
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType

from .errors import ExtensionMissingError

_REQUIRE_ENV = "NPSPEECH_REQUIRE_EXT"


def extensions_required() -> bool:
    """True when ``NPSPEECH_REQUIRE_EXT`` is set to a true value (``1``,
    ``true``, ``yes``).
    """
    return os.environ.get(_REQUIRE_ENV, "").strip().lower() in {"1", "true", "yes"}


def load_extension(name: str) -> ModuleType | None:
    """Import ``npspeech._ext.<name>``; return None (with a warning) when it
    is not built.

    Raises
    ------
    ExtensionMissingError
        When the module cannot be imported and ``NPSPEECH_REQUIRE_EXT=1``.
    """
    try:
        return importlib.import_module(f"npspeech._ext.{name}")
    except ImportError as error:
        message = (
            f"compiled extension npspeech._ext.{name} is not available ({error}); "
            "reinstall with `pip install -e .` to build it"
        )
        if extensions_required():
            raise ExtensionMissingError(message) from error
        warnings.warn(
            message + "; using the slower Python path", RuntimeWarning, stacklevel=2
        )
        return None

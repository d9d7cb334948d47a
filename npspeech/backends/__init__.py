"""Array backends with one kernel API.

Each backend is a package exposing the same kernel names and signatures
(``mfcc_frames``, ``ctc_loss_and_grad``, ``lstm_forward``, ...):

- ``numpy``: ``numpy_ref``, the readable reference that defines what every
  kernel must do;
- ``numba``: ``numba_cpu``, Numba-JIT CPU kernels, the default;
- ``cupy``: ``cupy_gpu``, CUDA kernels, imported lazily and only when asked for.

Kernels trust their inputs (shapes, dtypes, C-contiguity); the public modules
(``npspeech.features``, ``npspeech.ctc``, ``npspeech.nn``) validate before calling them.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from ..errors import ConfigError

#: backend name -> module path
BACKEND_MODULES = {
    "numpy": "npspeech.backends.numpy_ref",
    "numba": "npspeech.backends.numba_cpu",
    "cupy": "npspeech.backends.cupy_gpu",
}
DEFAULT_BACKEND = "numba"
BACKEND_ENV = "NPSPEECH_BACKEND"


def default_backend_name() -> str:
    """``$NPSPEECH_BACKEND`` when set, else ``numba``."""
    return (
        os.environ.get(BACKEND_ENV, DEFAULT_BACKEND).strip().lower() or DEFAULT_BACKEND
    )


def get_backend(name: str | ModuleType | None = None) -> ModuleType:
    """The backend module called ``name`` (``numpy``, ``numba`` or ``cupy``).

    A module passed in is returned as it is, so functions can take either.

    Raises
    ------
    ConfigError
        For an unknown name, or a backend whose imports fail: the cupy backend
        without CuPy installed, or without a CUDA device (the message says which).
    """
    if isinstance(name, ModuleType):
        return name
    name = default_backend_name() if name is None else name.strip().lower()
    if name not in BACKEND_MODULES:
        raise ConfigError(
            f"unknown backend {name!r}; choose one of {', '.join(BACKEND_MODULES)}"
        )
    try:
        return importlib.import_module(BACKEND_MODULES[name])
    except ImportError as error:
        # The cupy backend's import says what is missing: "CuPy is not installed
        # (pip install npspeech[gpu])" or "no CUDA device ...".
        raise ConfigError(f"backend {name!r} cannot run: {error}") from error


def available_backends() -> list[str]:
    """Names of the backends that import on this machine."""
    names = []
    for name in BACKEND_MODULES:
        try:
            get_backend(name)
        except ConfigError:
            continue
        names.append(name)
    return names

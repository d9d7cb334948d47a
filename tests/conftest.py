"""Shared fixtures: seeded random generators, backends and the real-data folder.

Real corpora are read from ``$NPSPEECH_DATA`` (default ``../shared/data`` beside the
repository). Where the folder is absent a test that needs it skips, unless
``NPSPEECH_DATA`` is set explicitly (as CI does): then it fails, so CI can never pass by
skipping the real-data tests.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data"


def data_root() -> Path:
    """The real-data folder named by ``$NPSPEECH_DATA`` or the default."""
    return Path(os.environ.get("NPSPEECH_DATA", DEFAULT_DATA)).resolve()


@pytest.fixture
def rng(request) -> np.random.Generator:
    """A generator seeded from the test's name: reproducible, different per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real-data folder; skips where it is absent, fails where CI promised it."""
    root = data_root()
    if not (root / "deepspeech_smoke").is_dir():
        message = f"real speech data not found at {root} (set NPSPEECH_DATA)"
        if "NPSPEECH_DATA" in os.environ:
            pytest.fail(message)
        pytest.skip(message)
    return root


def _backend_params():
    params = [pytest.param("numpy", id="numpy"), pytest.param("numba", id="numba")]
    params.append(pytest.param("cupy", id="cupy", marks=pytest.mark.gpu))
    return params


@pytest.fixture(scope="module")
def gpu_backend():
    """The real cupy backend; skips saying what is missing (CuPy or a CUDA device)."""
    from npspeech.backends import get_backend
    from npspeech.errors import ConfigError

    try:
        return get_backend("cupy")
    except ConfigError as error:
        pytest.skip(str(error))


@pytest.fixture(params=_backend_params())
def backend(request):
    """Each backend module in turn (CuPy only under ``-m gpu`` where it imports)."""
    from npspeech.backends import get_backend
    from npspeech.errors import ConfigError

    try:
        return get_backend(request.param)
    except ConfigError as error:
        pytest.skip(str(error))


@pytest.fixture
def numpy_backend():
    from npspeech.backends import get_backend

    return get_backend("numpy")


#: The trained model the int8 accuracy test quantises (committed with the tests).
TRAINED_MODEL = REPO / "tests" / "data" / "models" / "kathleen_fsdd_160.npz"


@pytest.fixture(scope="session")
def trained_model_path() -> Path:
    """``tests/data/models/kathleen_fsdd_160.npz``, a DeepSpeech model trained on
    kathleen_arctic and FSDD; fails (never skips) when the file is missing."""
    if not TRAINED_MODEL.is_file():
        pytest.fail(
            f"the trained test model {TRAINED_MODEL} is missing: it is committed with "
            "the repository (train it with the kathleen_fsdd_small recipe and "
            "--n-hidden 160 and copy its model.npz there)"
        )
    return TRAINED_MODEL

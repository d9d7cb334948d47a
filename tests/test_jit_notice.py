"""The first-run notice: printed once when kernels compile, never on a warm cache."""

from __future__ import annotations

import os
import subprocess
import sys

from npspeech.jit_notice import MESSAGE

# Runs two of the front end's Numba kernels (small ones: about a second to compile).
RUN_FEATURES = """
import sys
from npspeech import jit_notice
jit_notice.announce_compilation()
jit_notice.announce_compilation()  # a second call adds no second listener
import numpy as np
from npspeech import features
signal = np.random.default_rng(0).standard_normal(4000).astype(np.float32)
features.mfcc(signal, backend="numba")
features.mfcc(signal[:3000], backend="numba")
print(f"{jit_notice.compile_seconds():.3f}")
"""


def run_with_cache(cache_dir) -> subprocess.CompletedProcess:
    environment = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    environment.pop("NUMBA_DISABLE_JIT", None)
    return subprocess.run(
        [sys.executable, "-c", RUN_FEATURES],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )


def test_notice_once_on_a_cold_cache_and_never_on_a_warm_one(tmp_path):
    cold = run_with_cache(tmp_path)
    assert cold.returncode == 0, cold.stderr
    assert cold.stderr.count(MESSAGE) == 1, cold.stderr
    assert float(cold.stdout) > 0.0  # compile time was measured

    warm = run_with_cache(tmp_path)  # the same cache, now filled
    assert warm.returncode == 0, warm.stderr
    assert MESSAGE not in warm.stderr, warm.stderr
    assert float(warm.stdout) == 0.0


def test_asking_for_the_notice_imports_no_numba():
    """The listener waits for npspeech's Numba backend: a run that never needs a
    compiled kernel (a short decode) does not import Numba for the notice."""
    script = (
        "import sys\n"
        "from npspeech import jit_notice\n"
        "jit_notice.announce_compilation()\n"
        "print('numba' in sys.modules, jit_notice._listener is not None)\n"
        "import npspeech.backends.numba_cpu\n"
        "print('numba' in sys.modules, jit_notice._listener is not None)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["False False", "True True"]

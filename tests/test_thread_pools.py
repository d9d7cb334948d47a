"""Thread-pool defaults: set by ``import npspeech`` before NumPy loads; a user's kept.

Each case runs a fresh interpreter: the variables only matter before NumPy's first
import, which this test process is long past.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from npspeech import thread_pools

REPORT = (
    "import json, os, sys; import npspeech; from npspeech import thread_pools; "
    "print(json.dumps({'numpy loaded': 'numpy' in sys.modules, "
    "'values': {k: os.environ.get(k) for k in thread_pools.DEFAULTS}}))"
)


def _report(environment: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in thread_pools.DEFAULTS}
    env.update(environment)
    result = subprocess.run(
        [sys.executable, "-c", REPORT], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_import_sets_the_defaults_before_numpy_loads():
    report = _report({})
    assert report["values"] == {
        "OPENBLAS_THREAD_TIMEOUT": "4",
        "GOMP_SPINCOUNT": "10000",
    }
    # importing npspeech loaded nothing that loads OpenBLAS: the defaults were in time
    assert report["numpy loaded"] is False


@pytest.mark.parametrize("name", sorted(thread_pools.DEFAULTS))
def test_a_value_in_the_environment_is_kept(name):
    report = _report({name: "12"})
    assert report["values"][name] == "12"
    others = {k: v for k, v in report["values"].items() if k != name}
    assert others == {k: v for k, v in thread_pools.DEFAULTS.items() if k != name}

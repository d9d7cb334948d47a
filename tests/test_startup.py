"""Start-up: importing npspeech and building the command line load nothing numeric.

Each check runs in a fresh interpreter and reads ``sys.modules`` there, so it fails as
soon as a module on the path imports NumPy (or worse) at import time; it does not time
anything, since timings on a shared machine are noise. ``npspeech --help`` then stays
well under 0.3 s (figures in ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from npspeech.cli import COMMAND_MODULES

#: Modules whose import takes from 50 ms (NumPy) to over a second (SciPy's signal).
HEAVY = ("numpy", "numba", "scipy", "kenlm", "matplotlib")


def heavy_modules_after(code: str) -> list[str]:
    """The top-level packages of HEAVY that ``code`` leaves imported."""
    probe = (
        "import json, sys\n"
        f"{code}\n"
        "loaded = {name.split('.')[0] for name in sys.modules}\n"
        f"print(json.dumps(sorted(loaded & {set(HEAVY)!r})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_probe_sees_a_heavy_import():
    assert heavy_modules_after("import numpy") == ["numpy"]


def test_import_npspeech_imports_nothing_numeric():
    assert heavy_modules_after("import npspeech") == []


def test_building_the_command_line_imports_nothing_numeric():
    code = "import npspeech.cli\nnpspeech.cli.build_parser().format_help()"
    assert heavy_modules_after(code) == []


@pytest.mark.parametrize("command", [None, *COMMAND_MODULES])
def test_help_imports_nothing_numeric(command):
    argv = ["--help"] if command is None else [command, "--help"]
    code = (
        "from npspeech.cli import main\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        f"        main({argv!r})\n"
        "    except SystemExit as stop:\n"
        "        assert stop.code == 0, stop.code"
    )
    assert heavy_modules_after(code) == []

import subprocess
import sys

import pytest

from npspeech import __version__
from npspeech.cli import COMMAND_MODULES, main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"npspeech {__version__}"


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: npspeech" in capsys.readouterr().out


@pytest.mark.parametrize("command", COMMAND_MODULES)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: npspeech" in capsys.readouterr().out


def test_python_dash_m_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "npspeech", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("npspeech ")

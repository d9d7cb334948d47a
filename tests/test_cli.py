import re
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


def _parse(argv):
    from npspeech.cli import build_parser

    return build_parser().parse_args(argv)


def test_list_options_take_one_value_per_flag(capsys):
    args = _parse(["eval", "--model", "m", "--csv", "a.csv", "--csv", "b.csv"])
    assert args.csv == ["a.csv", "b.csv"]
    with pytest.raises(SystemExit):  # a second value is not swallowed by --csv
        _parse(["eval", "--model", "m", "--csv", "a.csv", "b.csv"])
    capsys.readouterr()
    args = _parse(
        ["decode", "--model", "m", "--csv", "a.csv", "x.wav", "y.wav", "--hotwords"]
        + ["w", "--hotwords", "v:3", "--audio", "z.wav", "--hot_words", "a:1,b:2"]
    )
    assert args.inputs == ["x.wav", "y.wav"] and args.audio == ["z.wav"]
    assert args.csv == ["a.csv"] and args.hotwords == ["w", "v:3"]
    assert args.hot_words == ["a:1,b:2"]


def test_decoder_options_choose_and_check_the_decoder():
    from npspeech.cli.eval import decode_config_from
    from npspeech.errors import ConfigError

    def config(*argv):
        return decode_config_from(_parse(["decode", "--model", "m", *argv]))

    assert config().decoder == "greedy"
    beam = config("--beam_width", "16", "--hot_words", "a:1.5,b:2", "--hotwords", "c")
    assert (beam.decoder, beam.beam_width) == ("beam", 16)
    assert beam.hotwords == ("c", "a:1.5", "b:2")
    # npspeech's defaults unless asked; DeepSpeech's settings are reachable by flags
    assert (beam.cutoff_top_n, beam.cutoff_prob) == (40, 0.99)
    deepspeech = config("--beam_width", "500", "--cutoff-prob", "1.0")
    assert (deepspeech.beam_width, deepspeech.cutoff_prob) == (500, 1.0)
    scored = config("--scorer", "s", "--lm_alpha", "0.5", "--lm_beta", "0")
    assert (scored.decoder, scored.alpha, scored.beta) == ("beam", 0.5, 0.0)
    for argv, message in [
        (["--decoder", "greedy", "--scorer", "s"], "--scorer only apply"),
        (["--alpha", "1"], "give --scorer"),
        (["--scorer", "s", "--beta", "-1"], "--beta -1.0"),
        (["--cutoff-prob", "1.5"], "(0, 1]"),
        (["--hot_words", "a:1,b"], "'b' is not WORD:BOOST"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            config(*argv)
    # eval has the options without DeepSpeech's spellings
    args = _parse(["eval", "--model", "m", "--csv", "a", "--beam-width", "4"])
    assert decode_config_from(args).decoder == "beam"
    with pytest.raises(SystemExit):
        _parse(["eval", "--model", "m", "--csv", "a", "--beam_width", "4"])

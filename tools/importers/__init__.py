"""Dataset importers: one module per corpus layout, and what they share.

Each layout module has ``NAME`` (the CLI's layout argument), ``HELP``,
``add_arguments(parser)`` for its own options and ``find(source, options) -> Found``,
which lists the corpus's utterances and the rows it cannot pair up;
:func:`.common.run_import` converts, normalises and writes the CSVs.
"""

from __future__ import annotations

from . import common_voice, folder, librispeech, ljspeech, speech_commands, vctk

LAYOUTS = {
    module.NAME: module
    for module in (librispeech, common_voice, ljspeech, vctk, speech_commands, folder)
}
# Layouts without an official split: the CLI adds the seeded split's options.
SEEDED = {ljspeech.NAME, vctk.NAME, folder.NAME}

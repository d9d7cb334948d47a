"""Language-model tooling: build ARPA models, read and write scorers, tune alpha/beta.

- :mod:`npspeech.lm.build`: interpolated modified Kneser-Ney ARPA models from text;
- :mod:`npspeech.lm.package`: :func:`open_scorer` for ARPA, KenLM binary, DeepSpeech
  ``.scorer`` and npspeech scorer packages, and writing packages;
- :mod:`npspeech.lm.tune`: grid search of the decoder's alpha and beta on a dev set.
"""

from .build import build_arpa, write_arpa
from .package import ScorerFile, open_scorer, set_scorer_parameters, write_package
from .tune import TuneResult, tune_alpha_beta

__all__ = [
    "ScorerFile",
    "TuneResult",
    "build_arpa",
    "open_scorer",
    "set_scorer_parameters",
    "tune_alpha_beta",
    "write_arpa",
    "write_package",
]

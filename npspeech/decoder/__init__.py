"""Decoders: per-frame class log-probabilities in, text out.

- :mod:`.greedy`: best-path decoding.
- :mod:`.results`: what both return (``CandidateTranscript`` with token and
  word timings).
- :mod:`.beam`: CTC prefix beam search with KenLM, hot-words, n-best, timings, streams.
- :mod:`.scorer`: the KenLM adapter (``Scorer``, ``LOG10_TO_LN``).

Names are imported lazily so that ``npspeech.decoder.greedy`` does not load KenLM.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "best_path": "greedy",
    "greedy_decode": "greedy",
    "make_candidate": "results",
    "BeamSearchDecoder": "beam",
    "BeamDecoderStream": "beam",
    "CandidateTranscript": "results",
    "Token": "results",
    "Word": "results",
    "to_deepspeech_json": "results",
    "Scorer": "scorer",
    "LOG10_TO_LN": "scorer",
    "log10_to_ln": "scorer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

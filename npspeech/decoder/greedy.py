"""Greedy (best-path) CTC decoding: each frame's arg-max class, merged and de-blanked.

The compiled kernel (``csrc/ctc_greedy.pyx``) is used when built;
``best_path_reference`` is the readable spec it is tested against.
"""

from __future__ import annotations

import numpy as np

from .._native import load_extension
from ..alphabet import Alphabet
from ..errors import DecoderError
from .results import CandidateTranscript, make_candidate

_compiled = load_extension("ctc_greedy")


def best_path_reference(
    log_probs: np.ndarray, blank: int
) -> tuple[np.ndarray, np.ndarray]:
    """NumPy spec of :func:`best_path` (same arguments and results)."""
    best = np.argmax(log_probs, axis=1).astype(np.int32)  # (T,)
    starts = np.ones(best.shape[0], dtype=bool)
    starts[1:] = best[1:] != best[:-1]  # a frame starts a label when its class changes
    keep = starts & (best != blank)
    return best[keep], np.flatnonzero(keep).astype(np.int32)


def best_path(log_probs: np.ndarray, blank: int) -> tuple[np.ndarray, np.ndarray]:
    """Best-path decoding of one utterance.

    Parameters
    ----------
    log_probs : array, shape (T, V), float
        Per-frame log-probabilities (or probabilities: only the arg-max matters).
    blank : int
        Class id of the blank, usually ``V - 1``.

    Returns
    -------
    labels : int32 array, shape (N,)
        The emitted class ids.
    frames : int32 array, shape (N,)
        The frame where each label starts (its timing).
    """
    log_probs = np.asarray(log_probs)
    if log_probs.ndim != 2 or log_probs.shape[1] == 0:
        raise DecoderError(
            f"expected log-probabilities of shape (T, V), got {log_probs.shape}"
        )
    if not 0 <= blank < log_probs.shape[1]:
        raise DecoderError(f"blank {blank} is outside the {log_probs.shape[1]} classes")
    if np.isnan(log_probs).any():
        raise DecoderError("log-probabilities contain NaN")
    if _compiled is None:
        return best_path_reference(log_probs, blank)
    log_probs = np.ascontiguousarray(log_probs, dtype=np.float32)
    return _compiled.best_path(log_probs, int(blank))


def greedy_decode(
    log_probs: np.ndarray, alphabet: Alphabet, frame_step_seconds: float
) -> CandidateTranscript:
    """The best path of one utterance as a transcript with token and word timings.

    Parameters
    ----------
    log_probs : float array, shape (T, V)
        Per-frame log-probabilities, the blank last (``alphabet.blank``).
    alphabet : Alphabet
    frame_step_seconds : float
        Seconds between frames (0.02 for DeepSpeech models).

    Returns
    -------
    CandidateTranscript
        ``confidence`` 1.0 (the only candidate); ``log_score`` the best path's
        log-probability, the sum over frames of the largest log-probability.
    """
    labels, frames = best_path(log_probs, alphabet.blank)
    log_probs = np.asarray(log_probs)
    token_log_probs = log_probs[frames, labels].astype(np.float64)
    log_score = float(log_probs.max(axis=1).sum()) if log_probs.shape[0] else 0.0
    return make_candidate(
        labels,
        frames,
        token_log_probs,
        alphabet.labels,
        alphabet.space,
        frame_step_seconds,
        1.0,
        log_score,
    )


class GreedyDecoderStream:
    """Best-path decoding of frames that arrive in chunks.

    The labels and timings after :meth:`finish` equal :func:`greedy_decode` of all
    frames at once: a label that continues over a chunk boundary is merged as in one
    pass. Only the emitted labels are kept (never the frames), so memory grows with the
    transcript, not with the audio.

    Parameters
    ----------
    alphabet : Alphabet
    frame_step_seconds : float
        Seconds between frames.
    """

    def __init__(self, alphabet: Alphabet, frame_step_seconds: float):
        self.alphabet = alphabet
        self.frame_step_seconds = float(frame_step_seconds)
        self._labels: list[int] = []
        self._frames: list[int] = []
        self._token_log_probs: list[float] = []
        self._previous = -1  # arg-max class of the last frame fed (-1 before any)
        self._log_score = 0.0
        self._n_frames = 0
        self._finished = False

    @property
    def n_frames(self) -> int:
        """Frames fed so far."""
        return self._n_frames

    @property
    def finished(self) -> bool:
        """True once :meth:`finish`, :meth:`finish_text` or :meth:`close` ran."""
        return self._finished

    def feed(self, log_probs: np.ndarray) -> None:
        """Advance by a chunk of frames, float array of shape (T_chunk, V)."""
        if self._finished:
            raise DecoderError("this stream is finished; start a new one")
        log_probs = np.asarray(log_probs)
        V = self.alphabet.n_classes
        if log_probs.ndim != 2 or log_probs.shape[1] != V:
            raise DecoderError(
                f"expected log-probabilities of shape (T, {V}), got {log_probs.shape}"
            )
        T = log_probs.shape[0]
        if T == 0:
            return
        if np.isnan(log_probs).any():
            raise DecoderError("log-probabilities contain NaN")
        best = np.argmax(log_probs, axis=1).astype(np.int32)  # (T,)
        starts = np.ones(T, dtype=bool)
        starts[0] = best[0] != self._previous  # continues the last chunk's label?
        starts[1:] = best[1:] != best[:-1]
        keep = np.flatnonzero(starts & (best != self.alphabet.blank))  # (N,)
        self._labels.extend(best[keep].tolist())
        self._frames.extend((keep + self._n_frames).tolist())
        self._token_log_probs.extend(
            log_probs[keep, best[keep]].astype(np.float64).tolist()
        )
        self._log_score += float(log_probs.max(axis=1).sum())
        self._previous = int(best[-1])
        self._n_frames += T

    def intermediate_text(self) -> str:
        """The text so far."""
        labels = self.alphabet.labels
        return "".join([labels[c] for c in self._labels])

    def intermediate(self, n_best: int = 1) -> list[CandidateTranscript]:
        """The transcript so far (greedy has one candidate whatever ``n_best``)."""
        return [
            make_candidate(
                np.asarray(self._labels, dtype=np.int32),
                np.asarray(self._frames, dtype=np.int32),
                np.asarray(self._token_log_probs, dtype=np.float64),
                self.alphabet.labels,
                self.alphabet.space,
                self.frame_step_seconds,
                1.0,
                self._log_score,
            )
        ]

    def finish(self, n_best: int = 1) -> list[CandidateTranscript]:
        """The final transcript; the stream accepts no more frames afterwards."""
        results = self.intermediate(n_best)
        self.close()
        return results

    def finish_text(self) -> str:
        """The final text."""
        text = self.intermediate_text()
        self.close()
        return text

    def close(self) -> None:
        """End the stream."""
        self._finished = True

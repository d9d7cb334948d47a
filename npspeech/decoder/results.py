"""What decoders return: candidate transcripts with token and word timings.

Shared by the greedy and the beam decoder so that both give the same structure and the
same JSON (DeepSpeech's client format). Word ``start_time`` is its first token's;
``duration`` runs to the start of the token that ends it (the following space, or the
word's own last letter at the end of the text), as DeepSpeech's client computes it. A
word's ``confidence`` is the geometric mean of its letters' probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Token:
    """One emitted label: its text, first frame on the best alignment and start time."""

    text: str
    frame: int
    start_time: float


@dataclass(frozen=True)
class Word:
    """A word with DeepSpeech's timing fields and a confidence in [0, 1]."""

    word: str
    start_time: float
    duration: float
    confidence: float


@dataclass(frozen=True)
class CandidateTranscript:
    """One transcript of the n-best list.

    Attributes
    ----------
    text
        The transcript.
    confidence
        Posterior over the returned n-best (softmax of ``log_score``).
    tokens
        Every label with its timing.
    words
        Words with start time, duration and confidence.
    log_score
        Final search score: ``ln P_ctc`` plus the weighted LM and hot-word terms.
    """

    text: str
    confidence: float
    tokens: list[Token] = field(default_factory=list)
    words: list[Word] = field(default_factory=list)
    log_score: float = 0.0

    def to_deepspeech_dict(self) -> dict:
        """This transcript as one entry of DeepSpeech JSON's ``transcripts`` list."""
        return {
            "confidence": self.confidence,
            "words": [
                {"word": w.word, "start_time": w.start_time, "duration": w.duration}
                for w in self.words
            ],
        }

    def to_deepspeech_json(self) -> dict:
        """``{"transcripts": [...]}`` holding this transcript alone."""
        return {"transcripts": [self.to_deepspeech_dict()]}


def to_deepspeech_json(candidates: Sequence[CandidateTranscript]) -> dict:
    """The n-best list in the structure DeepSpeech's client writes with ``--json``."""
    return {"transcripts": [candidate.to_deepspeech_dict() for candidate in candidates]}


def make_candidate(
    labels: np.ndarray,
    frames: np.ndarray,
    token_log_probs: np.ndarray,
    class_text: Sequence[str],
    space: int | None,
    frame_step_seconds: float,
    confidence: float,
    log_score: float,
) -> CandidateTranscript:
    """A transcript from its labels and where they sit on the frames.

    Parameters
    ----------
    labels : int32 array, shape (L,)
        Emitted class ids.
    frames : int array, shape (L,)
        Frame of each label.
    token_log_probs : float array, shape (L,)
        Log-probability of each label at its frame (for word confidences).
    class_text : sequence of str
        Text of each class id.
    space : int or None
        Class id of the word separator.
    frame_step_seconds : float
        Seconds between frames.
    confidence, log_score : float
        Stored as they are.
    """
    # plain Python numbers: per-element NumPy scalars cost more than the loop itself
    labels, frames = labels.tolist(), frames.tolist()
    token_log_probs = token_log_probs.tolist()
    tokens = [
        Token(class_text[label], frame, frame * frame_step_seconds)
        for label, frame in zip(labels, frames)
    ]
    words: list[Word] = []
    letters: list[int] = []  # token indices of the word being read
    for index, token in enumerate(tokens):
        is_space = space is not None and labels[index] == space
        if not is_space:
            letters.append(index)
        if (is_space or index == len(tokens) - 1) and letters:
            start = tokens[letters[0]].start_time
            mean_log_prob = sum(token_log_probs[i] for i in letters) / len(letters)
            words.append(
                Word(
                    word="".join(tokens[i].text for i in letters),
                    start_time=start,
                    duration=max(0.0, token.start_time - start),
                    confidence=math.exp(mean_log_prob),
                )
            )
            letters = []
    text = "".join(token.text for token in tokens)
    return CandidateTranscript(text, confidence, tokens, words, log_score)

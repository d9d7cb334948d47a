"""What decoders return: candidate transcripts with token and word timings.

Shared by the greedy and the beam decoder so that both give the same structure and the
same JSON (DeepSpeech's client format). Word ``start_time`` is its first token's;
``duration`` runs to the start of the token that ends it (the following space, or the
word's own last letter at the end of the text), as DeepSpeech's client computes it. A
word's ``confidence`` is the geometric mean of its letters' probabilities.

:class:`Metadata` is the same result under DeepSpeech 0.9's names (``transcripts``,
``tokens[j].timestep``, ``confidence`` = the summed log score), as
``Model.stt_with_metadata`` returns it. :func:`shift_candidate`, :func:`trim_candidate`
and :func:`join_candidates` put the pieces of a long recording together on one clock.
"""

from __future__ import annotations

import dataclasses
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
        for label, frame in zip(labels, frames, strict=True)
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


def shift_candidate(
    candidate: CandidateTranscript, frames: int, seconds: float
) -> CandidateTranscript:
    """``candidate`` moved later by ``frames`` output frames (``seconds`` seconds)."""
    tokens = [
        Token(t.text, t.frame + frames, t.start_time + seconds)
        for t in candidate.tokens
    ]
    words = [
        Word(w.word, w.start_time + seconds, w.duration, w.confidence)
        for w in candidate.words
    ]
    return dataclasses.replace(candidate, tokens=tokens, words=words)


def _word_token_spans(
    candidate: CandidateTranscript, space: str | None
) -> list[tuple[int, int]]:
    """``(first, end)`` token indices of each word (end exclusive, before its space),
    in the order of ``candidate.words``."""
    spans, first = [], None
    for index, token in enumerate(candidate.tokens):
        if space is not None and token.text == space:
            if first is not None:
                spans.append((first, index))
            first = None
        elif first is None:
            first = index
    if first is not None:
        spans.append((first, len(candidate.tokens)))
    return spans


def trim_candidate(
    candidate: CandidateTranscript,
    start: float,
    end: float,
    space: str | None = " ",
) -> CandidateTranscript:
    """The tokens of ``candidate`` that start in ``[start, end)`` seconds.

    Each token is taken from exactly one of a recording's overlapping windows, the one
    whose own part it starts in. A word wholly inside keeps its :class:`Word`; a word
    cut by an edge keeps its letters inside, its start and duration recomputed from
    them (its confidence kept). ``confidence`` and ``log_score`` are kept as they are.
    """
    spans = _word_token_spans(candidate, space)
    if len(spans) != len(candidate.words):
        raise ValueError("the candidate's words do not match its tokens")
    kept = []
    for (first, stop), word in zip(spans, candidate.words, strict=True):
        inside = [
            index
            for index in range(first, stop)
            if start <= candidate.tokens[index].start_time < end
        ]
        if len(inside) == stop - first:
            kept.append((candidate.tokens, (first, stop), word))
        elif inside:
            tokens = [candidate.tokens[index] for index in inside]
            begin = tokens[0].start_time
            part = Word(
                "".join(t.text for t in tokens),
                begin,
                max(0.0, tokens[-1].start_time - begin),
                word.confidence,
            )
            kept.append((tokens, (0, len(tokens)), part))
    return _from_words(candidate, kept, space)


def _from_words(
    candidate: CandidateTranscript,
    pieces: list[tuple[list[Token], tuple[int, int], Word]],
    space: str | None,
) -> CandidateTranscript:
    """A candidate of the given words: ``(tokens, (first, end), word)`` each, the word
    being ``tokens[first:end]``; words are separated by the space token that followed
    each in its own candidate (when it comes no later than the next word), or by a new
    one at its last letter's time."""
    tokens: list[Token] = []
    for index, (source, (first, stop), _) in enumerate(pieces):
        if index and space is not None:
            previous_source, (_, previous_stop), _ = pieces[index - 1]
            follower = previous_source[previous_stop : previous_stop + 1]
            if (
                follower
                and follower[0].text == space
                and follower[0].start_time <= source[first].start_time
            ):
                tokens.append(follower[0])
            else:  # the word ended its piece: a space at its last letter's time
                last = previous_source[previous_stop - 1]
                tokens.append(Token(space, last.frame, last.start_time))
        tokens.extend(source[first:stop])
    text = "".join(t.text for t in tokens)
    words = [word for _, _, word in pieces]
    return dataclasses.replace(candidate, text=text, tokens=tokens, words=words)


def join_candidates(
    pieces: Sequence[CandidateTranscript], space: str | None = " "
) -> CandidateTranscript:
    """Consecutive pieces of one recording (already on one clock) as one transcript.

    Words are joined with ``space`` (nothing when the alphabet has none);
    ``log_score`` is the sum of the pieces' and ``confidence`` the product of their
    posteriors (the pieces were decoded independently).
    """
    if space is None:
        tokens = [token for piece in pieces for token in piece.tokens]
        words = [word for piece in pieces for word in piece.words]
        joined = CandidateTranscript(
            "".join(t.text for t in tokens), 1.0, tokens, words, 0.0
        )
    else:
        parts = []
        for piece in pieces:
            spans = _word_token_spans(piece, space)
            if len(spans) != len(piece.words):
                raise ValueError("a piece's words do not match its tokens")
            parts.extend(
                zip([piece.tokens] * len(spans), spans, piece.words, strict=True)
            )
        joined = _from_words(CandidateTranscript("", 1.0), parts, space)
    return dataclasses.replace(
        joined,
        confidence=math.prod(piece.confidence for piece in pieces),
        log_score=math.fsum(piece.log_score for piece in pieces),
    )


# -- DeepSpeech's names ----------------------------------------------------------------


@dataclass(frozen=True)
class TokenMetadata:
    """One emitted character, as DeepSpeech's ``TokenMetadata``.

    Attributes
    ----------
    text : str
    timestep : int
        Output frame where it starts on the best alignment.
    start_time : float
        Seconds from the start of the audio.
    """

    text: str
    timestep: int
    start_time: float


@dataclass(frozen=True)
class TranscriptMetadata:
    """One transcript of the n-best, as DeepSpeech's ``CandidateTranscript``.

    Attributes
    ----------
    tokens : list of TokenMetadata
    confidence : float
        DeepSpeech's meaning: the transcript's summed log score (acoustic plus the
        weighted LM and hot-word terms), larger is better, not a probability.
    posterior : float
        npspeech's normalised confidence: the softmax of the scores over the returned
        n-best (``CandidateTranscript.confidence``).
    words : list of Word
        npspeech's words with start time, duration and confidence.
    text : str
        The transcript (DeepSpeech's client joins the tokens' texts; the same).
    """

    tokens: list[TokenMetadata]
    confidence: float
    posterior: float
    words: list[Word]
    text: str

    @classmethod
    def from_candidate(cls, candidate: CandidateTranscript) -> TranscriptMetadata:
        """The DeepSpeech view of ``candidate``."""
        return cls(
            tokens=[
                TokenMetadata(t.text, t.frame, t.start_time) for t in candidate.tokens
            ],
            confidence=candidate.log_score,
            posterior=candidate.confidence,
            words=list(candidate.words),
            text=candidate.text,
        )


@dataclass(frozen=True)
class Metadata:
    """What ``stt_with_metadata`` returns: ``transcripts``, best first (DeepSpeech's
    ``Metadata``)."""

    transcripts: list[TranscriptMetadata]

    @classmethod
    def from_candidates(cls, candidates: Sequence[CandidateTranscript]) -> Metadata:
        """The DeepSpeech view of an n-best list."""
        return cls([TranscriptMetadata.from_candidate(c) for c in candidates])

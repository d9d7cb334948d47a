"""Transcript outputs: plain text, DeepSpeech's JSON, SRT and WebVTT subtitles, TSV.

Every writer is a pure function from the candidate transcripts of one audio
(:class:`~npspeech.decoder.results.CandidateTranscript`, best first) to a string; the
caller decides where the string goes. :data:`WRITERS` maps each ``--format`` name to
its writer and :data:`EXTENSIONS` to the file extension ``--output-dir`` uses.

- ``text``: the best transcript and a newline.
- ``extended``: the best transcript rebuilt from its tokens' text, as DeepSpeech's
  client prints it with ``--extended``.
- ``json``: what DeepSpeech 0.9's client prints with ``--json``
  (``native_client/python/client.py``: ``metadata_json_output`` and
  ``words_from_candidate_transcript``): ``{"transcripts": [{"confidence", "words":
  [{"word", "start_time", "duration"}]}]}`` with two-space indentation, times rounded
  to 4 decimals, words rebuilt from the tokens by the client's own rule, and
  ``confidence`` DeepSpeech's: the candidate's summed log score (``log_score``), not
  npspeech's normalised n-best posterior.
- ``srt`` / ``vtt``: cues segmented by :func:`segments` (at pauses between words, at a
  maximum duration and at a maximum text length), wrapped into lines of at most
  ``max_line_chars`` characters; timestamps ``HH:MM:SS,mmm`` (SRT) and
  ``HH:MM:SS.mmm`` (WebVTT), hours always written.
- ``tsv``: a header ``start<TAB>end<TAB>text`` and one row per segment (the cues of
  the subtitles) or per word; times in seconds with 3 decimals; an ``audio`` column
  first when several inputs share one stream.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .decoder.results import CandidateTranscript

#: Characters per subtitle line: the common broadcast limit (BBC, Netflix: 42).
MAX_LINE_CHARS = 42
#: Lines per subtitle cue.
MAX_LINES = 2
#: Longest cue, seconds (subtitle guidelines: at most 6-7 s on screen).
MAX_CUE_SECONDS = 7.0
#: A silence between two words at least this long starts a new cue or segment.
PAUSE_SECONDS = 0.5
#: Shortest time a subtitle stays on screen, seconds, where the next cue leaves room
#: (word timings end at the last letter's onset, which would flash a short cue).
MIN_CUE_SECONDS = 0.7
#: Decimals of JSON times: DeepSpeech's client writes ``round(t, 4)``.
JSON_TIME_DECIMALS = 4
#: Columns of a TSV row (after ``audio`` when several inputs share the stream).
TSV_COLUMNS = ["start", "end", "text"]


@dataclass(frozen=True)
class Segment:
    """A stretch of words: start and end in seconds and the words' text."""

    start: float
    end: float
    text: str


# -- text and DeepSpeech's outputs -----------------------------------------------------


def text(candidates: Sequence[CandidateTranscript], **_: Any) -> str:
    """The best transcript and a newline (an empty line when there is none)."""
    return (candidates[0].text if candidates else "") + "\n"


def extended(candidates: Sequence[CandidateTranscript], **_: Any) -> str:
    """The best transcript joined from its tokens, as DeepSpeech's ``--extended``."""
    if not candidates:
        return "\n"
    return "".join(token.text for token in candidates[0].tokens) + "\n"


def deepspeech_words(candidate: CandidateTranscript) -> list[dict[str, Any]]:
    """The words DeepSpeech's client derives from a transcript's tokens.

    The client's ``words_from_candidate_transcript`` rule, kept with its quirks: a word
    ends at a space token or at the last token; its duration runs from its first
    letter to that token's start (never negative); a space with no letters before it
    (leading or repeated spaces) yields an empty word starting at 0; times are rounded
    to 4 decimals.
    """
    words: list[dict[str, Any]] = []
    word, word_start = "", 0.0
    tokens = candidate.tokens
    for index, token in enumerate(tokens):
        if token.text != " ":
            if not word:
                word_start = token.start_time
            word += token.text
        if token.text == " " or index == len(tokens) - 1:
            duration = max(token.start_time - word_start, 0.0)
            words.append(
                {
                    "word": word,
                    "start_time": round(word_start, JSON_TIME_DECIMALS),
                    "duration": round(duration, JSON_TIME_DECIMALS),
                }
            )
            word, word_start = "", 0.0
    return words


def deepspeech_record(candidates: Sequence[CandidateTranscript]) -> dict[str, Any]:
    """``{"transcripts": [...]}`` as DeepSpeech's ``metadata_json_output`` builds it."""
    return {
        "transcripts": [
            {"confidence": c.log_score, "words": deepspeech_words(c)}
            for c in candidates
        ]
    }


def deepspeech_json(candidates: Sequence[CandidateTranscript], **_: Any) -> str:
    """The JSON DeepSpeech's client prints with ``--json`` (indent 2), and a newline."""
    return json.dumps(deepspeech_record(candidates), indent=2) + "\n"


def json_line(candidates: Sequence[CandidateTranscript], audio: str) -> str:
    """One line of JSON Lines: ``{"audio": NAME, "transcripts": [...]}`` and a
    newline, for several inputs in one stream (DeepSpeech's client takes one file)."""
    record = {"audio": audio, **deepspeech_record(candidates)}
    return json.dumps(record, ensure_ascii=False) + "\n"


# -- segments and subtitles ------------------------------------------------------------


def segments(
    candidate: CandidateTranscript,
    *,
    max_line_chars: int = MAX_LINE_CHARS,
    max_lines: int = MAX_LINES,
    max_seconds: float = MAX_CUE_SECONDS,
    pause_seconds: float = PAUSE_SECONDS,
) -> list[Segment]:
    """Group a transcript's words into segments.

    A new segment starts before a word when the silence since the previous word's end
    is at least ``pause_seconds``, when the segment would then last longer than
    ``max_seconds``, or when its text would no longer :func:`wrap` into ``max_lines``
    lines of ``max_line_chars``. A word longer than a line is a segment of its own
    (words are never cut).

    Returns
    -------
    list of Segment
        In time order; ``end`` is the end of the segment's last word (its start plus
        duration), never before ``start``.
    """
    result: list[Segment] = []
    words: list[str] = []
    start = end = 0.0
    for word in candidate.words:
        word_end = word.start_time + max(word.duration, 0.0)
        if words:
            if (
                word.start_time - end >= pause_seconds
                or word_end - start > max_seconds
                or len(wrap(" ".join([*words, word.word]), max_line_chars)) > max_lines
            ):
                result.append(Segment(start, end, " ".join(words)))
                words = []
        if not words:
            start = word.start_time
            end = word_end
        words.append(word.word)
        end = max(end, word_end)
    if words:
        result.append(Segment(start, end, " ".join(words)))
    return result


def _display_times(cues: list[Segment], min_seconds: float) -> list[Segment]:
    """Cues lengthened to ``min_seconds`` on screen where the next cue leaves room."""
    shown = []
    for index, cue in enumerate(cues):
        end = max(cue.end, cue.start + min_seconds)
        if index + 1 < len(cues):
            end = min(end, cues[index + 1].start)
        shown.append(Segment(cue.start, max(end, cue.end), cue.text))
    return shown


def wrap(line: str, max_line_chars: int = MAX_LINE_CHARS) -> list[str]:
    """Break text at spaces into lines of at most ``max_line_chars`` (a longer word
    stays whole on its own line)."""
    lines: list[str] = []
    for word in line.split():
        if lines and len(lines[-1]) + 1 + len(word) <= max_line_chars:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def timestamp(seconds: float, decimal_mark: str = ",") -> str:
    """``HH:MM:SS,mmm`` (SRT; ``decimal_mark="."`` for WebVTT), rounded to the
    millisecond; hours run past 99 as needed, negative times read as 0."""
    total_ms = max(round(seconds * 1000), 0)
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_mark}{ms:03d}"


def _cues(
    candidates: Sequence[CandidateTranscript],
    max_line_chars: int,
    max_seconds: float,
    pause_seconds: float,
) -> list[Segment]:
    if not candidates:
        return []
    cues = segments(
        candidates[0],
        max_line_chars=max_line_chars,
        max_seconds=max_seconds,
        pause_seconds=pause_seconds,
    )
    return _display_times(cues, MIN_CUE_SECONDS)


def srt(
    candidates: Sequence[CandidateTranscript],
    *,
    max_line_chars: int = MAX_LINE_CHARS,
    max_seconds: float = MAX_CUE_SECONDS,
    pause_seconds: float = PAUSE_SECONDS,
    **_: Any,
) -> str:
    """SubRip subtitles of the best transcript (empty when it has no words)."""
    blocks = []
    for number, cue in enumerate(
        _cues(candidates, max_line_chars, max_seconds, pause_seconds), start=1
    ):
        lines = "\n".join(wrap(cue.text, max_line_chars))
        blocks.append(
            f"{number}\n{timestamp(cue.start)} --> {timestamp(cue.end)}\n{lines}\n"
        )
    return "\n".join(blocks)


def _vtt_escape(line: str) -> str:
    # WebVTT cue text may not hold a raw "&" or "<"; ">" is escaped so that no
    # transcript can spell the "-->" of a timing line.
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def vtt(
    candidates: Sequence[CandidateTranscript],
    *,
    max_line_chars: int = MAX_LINE_CHARS,
    max_seconds: float = MAX_CUE_SECONDS,
    pause_seconds: float = PAUSE_SECONDS,
    **_: Any,
) -> str:
    """WebVTT subtitles of the best transcript (the header alone when it has no
    words)."""
    blocks = ["WEBVTT\n"]
    for cue in _cues(candidates, max_line_chars, max_seconds, pause_seconds):
        lines = "\n".join(_vtt_escape(line) for line in wrap(cue.text, max_line_chars))
        blocks.append(
            f"{timestamp(cue.start, '.')} --> {timestamp(cue.end, '.')}\n{lines}\n"
        )
    return "\n".join(blocks)


# -- TSV -------------------------------------------------------------------------------


def _tsv_field(value: str) -> str:
    return " ".join(value.split())  # no tab or newline may break a row


def tsv(
    candidates: Sequence[CandidateTranscript],
    *,
    unit: str = "segment",
    audio: str | None = None,
    header: bool = True,
    max_line_chars: int = MAX_LINE_CHARS,
    max_seconds: float = MAX_CUE_SECONDS,
    pause_seconds: float = PAUSE_SECONDS,
    **_: Any,
) -> str:
    """Tab-separated rows ``start, end, text`` of the best transcript.

    Parameters
    ----------
    unit : {"segment", "word"}
        One row per segment (:func:`segments`, as the subtitle cues but without their
        display lengthening) or per word (``end`` = start + duration).
    audio : str, optional
        When given, an ``audio`` column first holding it (several inputs in one file).
    header : bool
        Start with the header row.
    """
    if unit not in ("segment", "word"):
        raise ValueError(f"tsv unit {unit!r}: choose segment or word")
    rows: list[Segment] = []
    if candidates and unit == "word":
        rows = [
            Segment(w.start_time, w.start_time + max(w.duration, 0.0), w.word)
            for w in candidates[0].words
        ]
    elif candidates:
        rows = segments(
            candidates[0],
            max_line_chars=max_line_chars,
            max_seconds=max_seconds,
            pause_seconds=pause_seconds,
        )
    prefix = [] if audio is None else [_tsv_field(audio)]
    lines = []
    if header:
        lines.append("\t".join(["audio"] * (audio is not None) + TSV_COLUMNS))
    for row in rows:
        fields = [*prefix, f"{row.start:.3f}", f"{row.end:.3f}", _tsv_field(row.text)]
        lines.append("\t".join(fields))
    return "".join(line + "\n" for line in lines)


#: ``--format`` name -> writer(candidates, **options) -> str.
WRITERS = {
    "text": text,
    "extended": extended,
    "json": deepspeech_json,
    "srt": srt,
    "vtt": vtt,
    "tsv": tsv,
}

#: ``--format`` name -> extension of the file ``--output-dir`` writes.
EXTENSIONS = {
    "text": ".txt",
    "extended": ".txt",
    "json": ".json",
    "srt": ".srt",
    "vtt": ".vtt",
    "tsv": ".tsv",
}

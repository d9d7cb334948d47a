"""Output writers on hand-made transcripts: exact strings, edge cases."""

from __future__ import annotations

import json

import pytest

from npspeech import formats
from npspeech.decoder.results import CandidateTranscript, Token, Word


def candidate(spec, log_score=-12.5, confidence=0.75):
    """A transcript from ``[(word, start, duration), ...]``: letters 20 ms apart,
    a space token at the word's end (none after the last word)."""
    tokens, words = [], []
    for index, (word, start, duration) in enumerate(spec):
        for offset, letter in enumerate(word):
            tokens.append(Token(letter, 0, round(start + 0.02 * offset, 6)))
        if index < len(spec) - 1:
            tokens.append(Token(" ", 0, start + duration))
        words.append(Word(word, start, duration, 0.9))
    text = " ".join(word for word, _, _ in spec)
    return CandidateTranscript(text, confidence, tokens, words, log_score)


HELLO = candidate([("hello", 0.5, 0.4), ("world", 1.1, 0.08)])


def test_text_and_extended():
    assert formats.text([HELLO]) == "hello world\n"
    assert formats.extended([HELLO]) == "hello world\n"
    assert formats.text([]) == "\n"
    assert formats.extended([CandidateTranscript("", 1.0)]) == "\n"


def test_json_is_deepspeech_clients_output():
    other = candidate([("yellow", 0.52, 0.3)], log_score=-20.25, confidence=0.25)
    written = formats.deepspeech_json([HELLO, other])
    assert written.endswith("}\n")
    assert written.startswith('{\n  "transcripts": [\n    {\n      "confidence": ')
    assert json.loads(written) == {
        "transcripts": [
            {
                # DeepSpeech's confidence: the summed log score, not the posterior
                "confidence": -12.5,
                "words": [
                    {"word": "hello", "start_time": 0.5, "duration": 0.4},
                    # the last word ends at its last letter's onset
                    {"word": "world", "start_time": 1.1, "duration": 0.08},
                ],
            },
            {
                "confidence": -20.25,
                "words": [{"word": "yellow", "start_time": 0.52, "duration": 0.1}],
            },
        ]
    }
    assert written == json.dumps(json.loads(written), indent=2) + "\n"


def test_json_rounds_times_to_four_decimals_and_keeps_the_clients_quirks():
    tokens = [
        Token(" ", 0, 0.123456),  # a leading space: an empty word from 0
        Token("a", 1, 0.2000001),
        Token(" ", 2, 0.3333333),
        Token(" ", 3, 0.5),  # a repeated space: another empty word
        Token("b", 4, 0.61),
    ]
    words = formats.deepspeech_words(CandidateTranscript(" a  b", 1.0, tokens))
    assert words == [
        {"word": "", "start_time": 0, "duration": 0.1235},
        {"word": "a", "start_time": 0.2, "duration": 0.1333},
        {"word": "", "start_time": 0, "duration": 0.5},
        {"word": "b", "start_time": 0.61, "duration": 0.0},
    ]


def test_json_of_no_words_and_of_no_candidates():
    empty = CandidateTranscript("", 1.0, log_score=-3.0)
    assert json.loads(formats.deepspeech_json([empty])) == {
        "transcripts": [{"confidence": -3.0, "words": []}]
    }
    assert json.loads(formats.deepspeech_json([])) == {"transcripts": []}


def test_json_line_names_the_audio_on_one_line():
    line = formats.json_line([HELLO], "dir/ä.wav")
    assert line.count("\n") == 1 and line.endswith("\n")
    record = json.loads(line)
    assert record["audio"] == "dir/ä.wav"
    assert record["transcripts"] == formats.deepspeech_record([HELLO])["transcripts"]


@pytest.mark.parametrize(
    "seconds, srt, vtt",
    [
        (0.0, "00:00:00,000", "00:00:00.000"),
        (1.2344, "00:00:01,234", "00:00:01.234"),
        (59.9996, "00:01:00,000", "00:01:00.000"),
        (3725.5, "01:02:05,500", "01:02:05.500"),
        (360_000.0, "100:00:00,000", "100:00:00.000"),
        (-0.01, "00:00:00,000", "00:00:00.000"),
    ],
)
def test_timestamps(seconds, srt, vtt):
    assert formats.timestamp(seconds) == srt
    assert formats.timestamp(seconds, ".") == vtt


def test_segments_split_at_pauses_length_and_duration():
    spoken = candidate(
        [("one", 0.0, 0.3), ("two", 0.35, 0.3), ("three", 1.5, 0.4), ("four", 2.0, 0.3)]
    )
    # the 0.85 s silence after "two" splits
    found = formats.segments(spoken, pause_seconds=0.5)
    assert [s.text for s in found] == ["one two", "three four"]
    times = [t for s in found for t in (s.start, s.end)]
    assert times == pytest.approx([0.0, 0.65, 1.5, 2.3])
    # no pause long enough: one segment
    assert [s.text for s in formats.segments(spoken, pause_seconds=2.0)] == [
        "one two three four"
    ]
    # one line of at most 9 characters: "one two" (7) + " three" would be 13
    lines = formats.segments(spoken, max_line_chars=9, max_lines=1, pause_seconds=9)
    assert [s.text for s in lines] == ["one two", "three", "four"]
    # two such lines: "one two" / "three" then "four" would make a third
    lines = formats.segments(spoken, max_line_chars=9, max_lines=2, pause_seconds=9)
    assert [s.text for s in lines] == ["one two three", "four"]
    # at most 1.6 s: "three" would end at 1.9
    assert [
        s.text for s in formats.segments(spoken, max_seconds=1.6, pause_seconds=9)
    ] == ["one two", "three four"]


def test_a_word_longer_than_a_line_is_kept_whole():
    long = candidate([("a", 0.0, 0.1), ("b" * 50, 0.2, 1.0), ("c", 1.3, 0.1)])
    one_line = formats.segments(long, max_line_chars=10, max_lines=1)
    assert [s.text for s in one_line] == ["a", "b" * 50, "c"]
    two_lines = formats.segments(long, max_line_chars=10, max_lines=2)
    assert [s.text for s in two_lines] == ["a " + "b" * 50, "c"]
    assert formats.wrap("b" * 50 + " c d", 10) == ["b" * 50, "c d"]


def test_srt_exact():
    spoken = candidate(
        [("one", 3600.0, 0.3), ("two", 3600.35, 0.3), ("three", 3602.0, 0.1)]
    )
    assert formats.srt([spoken]) == (
        "1\n01:00:00,000 --> 01:00:00,700\none two\n"
        "\n"
        # the last word ends at its onset: shown for MIN_CUE_SECONDS
        "2\n01:00:02,000 --> 01:00:02,700\nthree\n"
    )


def test_srt_wraps_long_cues_into_lines():
    words = [(f"word{i:02d}", 0.3 * i, 0.25) for i in range(12)]
    written = formats.srt([candidate(words)], max_line_chars=20)
    first = written.split("\n\n")[0].splitlines()
    assert first[0] == "1"
    assert first[2:] == ["word00 word01 word02", "word03 word04 word05"]
    text_lines = [line for line in written.splitlines() if line.startswith("word")]
    assert len(text_lines) == 4 and all(len(line) <= 20 for line in text_lines)
    cues = written.strip().split("\n\n")
    assert len(cues) == 2 and cues[1].splitlines()[0] == "2"


def test_subtitles_of_one_word_and_of_none():
    one = candidate([("hi", 0.25, 0.0)])
    assert formats.srt([one]) == "1\n00:00:00,250 --> 00:00:00,950\nhi\n"
    assert formats.vtt([one]) == "WEBVTT\n\n00:00:00.250 --> 00:00:00.950\nhi\n"
    nothing = CandidateTranscript("", 1.0)
    assert formats.srt([nothing]) == ""
    assert formats.vtt([nothing]) == "WEBVTT\n"
    assert formats.srt([]) == ""


def test_cues_never_overlap_the_next():
    close = candidate([("a", 0.0, 0.0), ("b", 0.6, 0.0)])
    written = formats.srt([close], pause_seconds=0.5)
    assert "00:00:00,000 --> 00:00:00,600\na" in written
    assert "00:00:00,600 --> 00:00:01,300\nb" in written


def test_vtt_escapes_markup():
    odd = candidate([("a<b", 0.0, 0.2), ("-->", 0.3, 0.2), ("&", 0.6, 0.1)])
    written = formats.vtt([odd])
    assert written.splitlines()[3] == "a&lt;b --&gt; &amp;"


def test_tsv_segments_and_words():
    spoken = candidate([("one", 0.0, 0.3), ("two", 1.0, 0.25)])
    assert formats.tsv([spoken]) == (
        "start\tend\ttext\n0.000\t0.300\tone\n1.000\t1.250\ttwo\n"
    )
    assert formats.tsv([spoken], pause_seconds=5) == (
        "start\tend\ttext\n0.000\t1.250\tone two\n"
    )
    assert formats.tsv([spoken], unit="word", audio="x\ty.wav", header=False) == (
        "x y.wav\t0.000\t0.300\tone\nx y.wav\t1.000\t1.250\ttwo\n"
    )
    assert formats.tsv([spoken], audio="a.wav").splitlines()[0] == (
        "audio\tstart\tend\ttext"
    )
    assert formats.tsv([CandidateTranscript("", 1.0)]) == "start\tend\ttext\n"
    assert formats.tsv([candidate([("late", 3725.0, 0.5)])]).splitlines()[1] == (
        "3725.000\t3725.500\tlate"
    )
    with pytest.raises(ValueError, match="unit"):
        formats.tsv([spoken], unit="letter")


def test_every_format_has_a_writer_and_an_extension():
    assert set(formats.WRITERS) == set(formats.EXTENSIONS)
    for name, write in formats.WRITERS.items():
        assert isinstance(write([HELLO]), str), name

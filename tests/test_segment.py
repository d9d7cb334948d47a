"""Long recordings: block reading, pauses, pieces joined on one clock, bounded memory.

Long files are built in ``tmp_path`` by concatenating real ARCTIC recordings with short
silences between them, as sentences are spoken.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile
from helpers.inference_models import small_model, smoke_alphabet

from npspeech import segment
from npspeech.api import Model
from npspeech.audio import load
from npspeech.config import DecodeConfig
from npspeech.corpus import read_csvs
from npspeech.metrics import error_counts

GAP_SECONDS = 0.6


@pytest.fixture(scope="module")
def alphabet(data_dir):
    return smoke_alphabet(data_dir)


def _pieces(data_dir, count):
    rows = read_csvs([data_dir / "kathleen_arctic" / "test.csv"])[:count]
    return [load(row.audio_path) for row in rows]


def _write_long(path, pieces, rate=16_000):
    gap = np.zeros(int(GAP_SECONDS * rate), dtype=np.float32)
    starts, parts, position = [], [], 0
    for piece in pieces:
        starts.append(position / rate)
        parts += [piece, gap]
        position += piece.shape[0] + gap.shape[0]
    soundfile.write(str(path), np.concatenate(parts), rate, subtype="PCM_16")
    return starts, position / rate


@pytest.mark.parametrize(
    "name",
    [
        "deepspeech_smoke/wav/LDC93S1_pcms16le_2_44100.wav",  # stereo 44.1 kHz
        "deepspeech_smoke/wav/LDC93S1_pcms16le_1_8000.wav",
        "deepspeech_smoke/wav/LDC93S1.wav",
    ],
)
def test_blocks_equal_loading_the_whole_file(data_dir, name):
    path = data_dir / name
    whole = load(path)
    blocks = list(segment.audio_blocks(path, 16_000, block_seconds=0.37))
    assert len(blocks) > 5
    joined = np.concatenate(blocks)
    assert joined.shape == whole.shape
    np.testing.assert_allclose(joined, whole, atol=2e-6)


def test_choose_cut():
    quiet = np.zeros(40, dtype=bool)
    level = np.full(40, -20.0)
    quiet[4:8] = True  # a pause before the minimum length: not used
    quiet[20:26] = True  # the first usable pause: cut in its middle
    quiet[30:34] = True
    assert segment.choose_cut(level, quiet, 10, 100, 3) == 23
    assert segment.choose_cut(level[:24], quiet[:24], 10, 100, 3) is None  # growing
    quiet[:] = False
    assert segment.choose_cut(level, quiet, 10, 100, 3) is None
    level[31] = -60.0  # no pause by the maximum length: the quietest late frame
    assert segment.choose_cut(level, quiet, 10, 40, 3) == 31
    quiet[24:28] = True  # ... or the longest pause in the second half
    assert segment.choose_cut(level, quiet, 30, 40, 3) == 26


def test_pauses_between_recordings(data_dir):
    pieces = _pieces(data_dir, 2)
    gap = np.zeros(int(GAP_SECONDS * 16_000), dtype=np.float32)
    signal = np.concatenate([pieces[0], gap, pieces[1]])
    detector = segment.PauseDetector(320, 16_000)
    flags = []
    for start in range(0, signal.shape[0], 3001):
        flags.append(detector.feed(signal[start : start + 3001])[1])
    quiet = np.concatenate(flags)
    gap_hops = slice(pieces[0].shape[0] // 320 + 1, (pieces[0].shape[0] + 9600) // 320)
    assert quiet[gap_hops].all()
    assert quiet.mean() < 0.6  # speech is mostly not quiet


@pytest.mark.parametrize("architecture", ["deepspeech", "ds2-stream", "ds2"])
def test_long_file_is_the_pieces_joined(
    architecture, alphabet, data_dir, tmp_path, monkeypatch
):
    calibration = load(data_dir / "deepspeech_smoke/wav/LDC93S1.wav")
    network, features = small_model(architecture, alphabet, calibration=calibration)
    model = Model.from_network(network, features, alphabet)
    model.set_decoder(DecodeConfig(decoder="greedy"))
    pieces = _pieces(data_dir, 6)
    path = tmp_path / "long.wav"
    starts, duration = _write_long(path, pieces)
    # scale the limits down so that a short file exercises every path
    monkeypatch.setattr(segment, "LONG_AUDIO_SECONDS", 5.0)
    monkeypatch.setattr(segment, "BLOCK_SECONDS", 1.3)
    monkeypatch.setattr(segment, "MIN_SEGMENT_SECONDS", 2.0)
    monkeypatch.setattr(segment, "MAX_SEGMENT_SECONDS", 6.0)
    monkeypatch.setattr(segment, "WINDOW_OVERLAP_SECONDS", 0.5)
    assert segment.is_long(path, 16_000)
    (long,) = model.transcribe_full(path, n_best=3)
    times = [t.start_time for t in long.tokens]
    assert times == sorted(times) and times[-1] < duration
    for token in long.tokens:
        assert token.start_time == pytest.approx(token.frame * model.frame_seconds)
    assert [w.word for w in long.words] == long.text.split()
    # what segmentation approximates: one decode of the whole file at once (a
    # random network reacts strongly to what precedes and follows, so the pieces
    # decoded alone, without the silence and speech around them, are no reference)
    whole = model.decoder.decode(
        model.utterance_log_probs(model.compute_features(path))
    )[0]
    if model.streamable:
        # one pass of the network over the whole file, the decoder cut at pauses:
        # the labels and frames of decoding the whole file at once, except that a
        # label the model holds over a cut is emitted on both sides of it
        _assert_same_labels(long, whole, max_splits=len(pieces))
    else:
        # windows cut in pauses, each run with context on both sides
        assert len(whole.text) > 30
        assert error_counts(whole.text, long.text).cer < 0.05, (whole.text, long.text)
        assert len(long.text.split()) >= len(pieces) - 1


def _assert_same_labels(long, whole, max_splits):
    ours = [(t.text, t.frame) for t in long.tokens if t.text != " "]
    theirs = [(t.text, t.frame) for t in whole.tokens if t.text != " "]
    assert len(theirs) > 30
    position, splits = 0, 0
    for token in ours:
        if position < len(theirs) and token == theirs[position]:
            position += 1
        else:
            assert position and token[0] == theirs[position - 1][0], token
            splits += 1
    assert position == len(theirs) and splits <= max_splits


def test_array_input_is_segmented(alphabet, data_dir, monkeypatch):
    network, features = small_model("deepspeech", alphabet)
    model = Model.from_network(network, features, alphabet)
    model.set_decoder(DecodeConfig(decoder="greedy"))
    monkeypatch.setattr(segment, "LONG_AUDIO_SECONDS", 2.0)
    signal = load(data_dir / "deepspeech_smoke/wav/arctic_a0024.wav")
    calls = []
    original = segment.transcribe_long
    monkeypatch.setattr(
        segment,
        "transcribe_long",
        lambda *a, **k: calls.append(1) or original(*a, **k),
    )
    text = model.stt(signal)
    assert calls and text == model.transcribe(signal)


_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from pathlib import Path
    import numpy as np, soundfile
    sys.path.insert(0, {tests!r})
    from helpers.inference_models import small_model, smoke_alphabet
    from npspeech.api import Model
    from npspeech.config import DecodeConfig
    data, path, minutes = Path({data!r}), {path!r}, {minutes!r}
    alphabet = smoke_alphabet(data)
    network, features = small_model("deepspeech", alphabet)
    model = Model.from_network(network, features, alphabet)
    model.set_decoder(DecodeConfig(decoder="beam", beam_width=32))
    # the file: a real recording repeated, written block by block
    piece, rate = soundfile.read(str(data / "deepspeech_smoke/wav/arctic_a0024.wav"),
                                 dtype="int16")
    piece = np.concatenate([piece, np.zeros(8000, np.int16)])
    with soundfile.SoundFile(path, "w", rate, 1, "PCM_16") as out:
        for _ in range(int(minutes * 60 * rate / piece.shape[0]) + 1):
            out.write(piece)
    model.transcribe(data / "deepspeech_smoke/wav/LDC93S1.wav")  # compile first
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = model.transcribe_full(path)[0]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({{"before": before / 1024, "peak": peak / 1024,
                       "last": result.tokens[-1].start_time}}))
    """
)


def _peak_rss(tmp_path, data_dir, minutes):
    from pathlib import Path

    tests = str(Path(__file__).resolve().parent)
    code = _CHILD.format(
        tests=tests,
        data=str(data_dir),
        path=str(tmp_path / f"{minutes}.wav"),
        minutes=minutes,
    )
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def _check_memory(tmp_path, data_dir, short, long, bound_mb):
    first = _peak_rss(tmp_path, data_dir, short)
    second = _peak_rss(tmp_path, data_dir, long)
    assert second["last"] > 0.9 * long * 60  # the whole file was decoded
    grown = (second["peak"] - second["before"]) - (first["peak"] - first["before"])
    assert grown < bound_mb, (first, second)


def test_memory_does_not_grow_with_duration(tmp_path, data_dir):
    # 1.5 minutes of float32 audio alone would be 5.8 MB, the small network's
    # activations over it at once several times that
    _check_memory(tmp_path, data_dir, 0.25, 1.5, bound_mb=5.0)


@pytest.mark.slow
def test_memory_one_and_ten_minutes(tmp_path, data_dir):
    # 10 minutes of float32 audio alone would be 38 MB
    _check_memory(tmp_path, data_dir, 1.0, 10.0, bound_mb=10.0)


def test_trim_and_join_keep_one_clock():
    from npspeech.decoder.results import (
        CandidateTranscript,
        Token,
        Word,
        join_candidates,
        shift_candidate,
        trim_candidate,
    )

    def candidate(spec, score):
        tokens = [Token(text, frame, frame * 0.02) for text, frame in spec]
        text = "".join(t.text for t in tokens)
        words, letters = [], []
        for index, token in enumerate(tokens):
            if token.text != " ":
                letters.append(token)
            if (token.text == " " or index == len(tokens) - 1) and letters:
                start = letters[0].start_time
                words.append(
                    Word(
                        "".join(t.text for t in letters),
                        start,
                        token.start_time - start,
                        0.5,
                    )
                )
                letters = []
        return CandidateTranscript(text, 0.5, tokens, words, score)

    first = candidate([("a", 1), ("b", 3), (" ", 5), ("c", 40), ("d", 60)], -3.0)
    # the window [0, 1 s): "ab" whole, "cd" cut after its first letter
    trimmed = trim_candidate(first, 0.0, 1.0)
    assert trimmed.text == "ab c"
    assert [w.word for w in trimmed.words] == ["ab", "c"]
    assert trimmed.words[0] == first.words[0]
    second = shift_candidate(candidate([("e", 2), (" ", 4), ("f", 6)], -2.0), 50, 1.0)
    assert [t.frame for t in second.tokens] == [52, 54, 56]
    assert second.words[0].start_time == pytest.approx(1.04)
    joined = join_candidates([trimmed, second])
    assert joined.text == "ab c e f"
    assert [w.word for w in joined.words] == ["ab", "c", "e", "f"]
    times = [t.start_time for t in joined.tokens]
    assert times == sorted(times)
    assert joined.log_score == -5.0 and joined.confidence == 0.25

"""Batch inputs and outputs without a model: discovery, stdin PCM, output names."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import soundfile

from npspeech import batch
from npspeech.errors import AudioError, DataError, OutputError


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folders_are_searched_recursively_in_sorted_order(tmp_path):
    root = tmp_path / "in"
    for name in ["b.wav", "a.FLAC", "notes.txt", "sub/z.mp3", "sub/deeper/c.ogg"]:
        _touch(root / name)
    sources = batch.discover([str(root)])
    assert [os.path.relpath(s.path, root) for s in sources] == [
        "a.FLAC",
        "b.wav",
        os.path.join("sub", "deeper", "c.ogg"),
        os.path.join("sub", "z.mp3"),
    ]
    assert [s.output_stem for s in sources] == ["a", "b", "sub/deeper/c", "sub/z"]


def test_a_folder_without_audio_and_an_empty_glob_are_problems(tmp_path):
    _touch(tmp_path / "empty" / "readme.txt")
    pattern = str(tmp_path / "*.nothing")
    sources = batch.discover([str(tmp_path / "empty"), pattern])
    assert [bool(s.problem) for s in sources] == [True, True]
    assert (
        "no audio files" in sources[0].problem and str(tmp_path) in sources[0].problem
    )
    assert sources[1].problem == f"{pattern}: no file matches"


def test_globs_files_and_order(tmp_path):
    for name in ["x2.wav", "x1.wav", "sub/x3.wav"]:
        _touch(tmp_path / name)
    sources = batch.discover(
        [str(tmp_path / "sub" / "x3.wav"), str(tmp_path / "**" / "x*.wav")]
    )
    # folder by folder: sub/x3.wav sorts before x1.wav
    assert [os.path.relpath(s.path, tmp_path) for s in sources] == [
        os.path.join("sub", "x3.wav"),
        os.path.join("sub", "x3.wav"),
        "x1.wav",
        "x2.wav",
    ]
    # a missing plain path is kept: decoding it reports the file as not found
    missing = batch.discover([str(tmp_path / "gone.wav")])
    assert missing[0].path == str(tmp_path / "gone.wav") and not missing[0].problem


def test_csv_rows_after_the_inputs(tmp_path):
    _touch(tmp_path / "clips" / "one.wav")
    csv = tmp_path / "set.csv"
    csv.write_text(
        "wav_filename,wav_filesize,transcript\n"
        "clips/one.wav,1,one\n"
        f"{tmp_path / 'clips' / 'one.wav'},1,again\n"
    )
    sources = batch.discover([str(tmp_path / "clips" / "one.wav")], [str(csv)])
    assert [s.output_stem for s in sources] == ["one", "clips/one", "clips/one"]
    assert all(s.path == str(tmp_path / "clips" / "one.wav") for s in sources)
    with pytest.raises(DataError, match="missing.csv"):
        batch.discover([], [str(tmp_path / "missing.csv")])


def _wav_bytes(samples, rate, channels=1):
    buffer = io.BytesIO()
    data = np.repeat(samples[:, None], channels, axis=1)
    soundfile.write(buffer, data, rate, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def test_stdin_wav_is_recognised_by_its_header(rng):
    samples = (rng.standard_normal(1000) * 3000).astype(np.int16)
    read, rate = batch.read_pcm(_wav_bytes(samples, 8000, channels=2), None)
    assert rate == 8000
    np.testing.assert_array_equal(read, samples.astype(np.float32) / 32768)


def test_stdin_raw_pcm_is_int16_little_endian(rng):
    samples = (rng.standard_normal(999) * 3000).astype(np.int16)
    read, rate = batch.read_pcm(samples.astype("<i2").tobytes(), 22050)
    assert rate == 22050
    np.testing.assert_array_equal(read, samples.astype(np.float32) / 32768)
    _, rate = batch.read_pcm(samples.tobytes(), None)
    assert rate == 0  # the model's rate


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "no audio"),
        (b"\x01\x02\x03", "not a whole number"),
        (b"RIFF\x00\x00\x00\x00WAVEjunk", "unreadable WAV"),
    ],
)
def test_bad_stdin(data, message):
    with pytest.raises(AudioError, match=message):
        batch.read_pcm(data, 16000, where="stdin")


def test_stdin_is_read_once():
    stream = io.BytesIO(np.zeros(600, np.int16).tobytes())
    sources = batch.discover(["-"], stdin=stream, raw_rate=16000)
    assert sources[0].name == "-" and sources[0].output_stem == "stdin"
    assert sources[0].samples.shape == (600,) and sources[0].sample_rate == 16000
    with pytest.raises(AudioError, match="once"):
        batch.discover(["-", "-"], stdin=stream)


def test_output_paths_refuse_clashes_and_existing_files(tmp_path):
    sources = [
        batch.Source("a/x.wav", "a/x.wav", "x"),
        batch.Source("b/x.flac", "b/x.flac", "x"),
    ]
    with pytest.raises(OutputError, match="a/x.wav and b/x.flac"):
        batch.output_paths(sources, tmp_path, ".txt", overwrite=False)
    sources[1] = batch.Source("b/y.wav", "b/y.wav", "sub/y")
    problem = batch.Source("*.none", problem="*.none: no file matches")
    paths = batch.output_paths([*sources, problem], tmp_path, ".srt", False)
    assert paths == [tmp_path / "x.srt", tmp_path / "sub" / "y.srt", None]
    (tmp_path / "x.srt").write_text("kept")
    with pytest.raises(OutputError, match="x.srt"):
        batch.output_paths(sources, tmp_path, ".srt", overwrite=False)
    assert batch.output_paths(sources, tmp_path, ".srt", overwrite=True)[0] == (
        tmp_path / "x.srt"
    )


def test_summary_line():
    summary = batch.Summary()
    source = batch.Source("a.wav", "a.wav", "a")
    summary.add(batch.Result(source, seconds=4.0))
    summary.add(batch.Result(source, seconds=6.0, error="a.wav: corrupt"))
    line = summary.line()
    assert line.startswith("decoded 2 files (1 failed): 4.0 s of audio in ")
    assert "real-time factor" in line
    assert "real-time factor" not in batch.Summary().line()

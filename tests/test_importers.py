"""Dataset importers (tools/): fixture trees in each corpus's layout, imported and
checked: CSVs per split, relative paths and sizes, normalised transcripts, 16 kHz mono
int16 WAVs, the report of unusable rows, skipping on a re-run and resuming after an
interruption.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from npspeech.alphabet import english
from npspeech.config import FeatureConfig
from npspeech.corpus import check_corpus, read_csvs
from npspeech.errors import AudioError

REPO = Path(__file__).resolve().parent.parent
# tools/ sits beside the package, not in it: import it from the repository root.
sys.path.insert(0, str(REPO))
from tools import import_corpus  # noqa: E402
from tools.importers import common, librispeech  # noqa: E402


# -- fixture helpers -------------------------------------------------------------------
def tone(
    path: Path,
    rate: int,
    seconds: float = 0.5,
    channels: int = 1,
    level: float = 0.3,
    **kw,
) -> None:
    """A 440 Hz tone of peak ``level`` at ``rate`` Hz (channels differ in level)."""
    t = np.arange(int(rate * seconds)) / rate
    signal = level * np.sin(2 * np.pi * 440 * t)
    data = np.stack([signal * (1 - 0.3 * c) for c in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), data.astype(np.float32), rate, **kw)


def corrupt(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not audio" * 20)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def run(*argv: str) -> int:
    return import_corpus.main([*argv, "--no-progress", "--jobs", "1"])


def imported(dest: Path) -> dict[str, dict[str, str]]:
    """``{split: {wav_filename: transcript}}`` of every CSV in ``dest``, after
    checking each row's path is relative, its size is the file's, and its WAV is
    16 kHz mono 16-bit PCM that npspeech's own corpus check accepts.
    """
    splits = {}
    for csv_path in sorted(dest.glob("*.csv")):
        if csv_path.name == common.REPORT_NAME:
            continue
        with csv_path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        for row in rows:
            assert not os.path.isabs(row["wav_filename"])
            wav = dest / row["wav_filename"]
            assert int(row["wav_filesize"]) == wav.stat().st_size
            info = soundfile.info(str(wav))
            assert (info.samplerate, info.channels, info.subtype) == (
                16000,
                1,
                "PCM_16",
            )
        if rows:
            utterances = read_csvs([csv_path])
            _, problems, _ = check_corpus(
                utterances, english(), FeatureConfig(), progress=False
            )
            assert problems == []
        splits[csv_path.stem] = {r["wav_filename"]: r["transcript"] for r in rows}
    return splits


def report(dest: Path) -> list[dict[str, str]]:
    with (dest / common.REPORT_NAME).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


# -- LibriSpeech -----------------------------------------------------------------------
def librispeech_tree(root: Path) -> Path:
    """``LibriSpeech/{dev-clean,test-other}/<speaker>/<chapter>/`` with FLAC and
    ``.trans.txt``; one corrupt FLAC, one line without audio, one line with a
    character outside the alphabet.
    """
    base = root / "LibriSpeech"
    lines = {
        ("dev-clean", "84", "121123"): [
            ("0000", "GO DO YOU HEAR"),
            ("0001", "BUT IN LESS THAN FIVE MINUTES THE STAIRCASE GROANED"),
            ("0002", "AT 3 O'CLOCK"),
        ],
        ("test-other", "1688", "142285"): [
            ("0000", "THERE'S IRON THEY SAY IN ALL OUR BLOOD"),
            ("0001", "CORRUPT FILE HERE"),
            ("0002", "NO AUDIO FOR THIS LINE"),
            ("0003", "HANS CHRISTIAN ØRSTED"),
        ],
    }
    for (split, speaker, chapter), utterances in lines.items():
        folder = base / split / speaker / chapter
        text = []
        for number, transcript in utterances:
            utterance = f"{speaker}-{chapter}-{number}"
            text.append(f"{utterance} {transcript}")
            if transcript == "CORRUPT FILE HERE":
                corrupt(folder / f"{utterance}.flac")
            elif transcript != "NO AUDIO FOR THIS LINE":
                tone(folder / f"{utterance}.flac", 16000, seconds=2.0, format="FLAC")
        write(folder / f"{speaker}-{chapter}.trans.txt", "\n".join(text) + "\n")
    return base


def test_librispeech(tmp_path, capsys):
    source, dest = librispeech_tree(tmp_path / "src"), tmp_path / "out"
    assert run("librispeech", str(source), str(dest)) == 0
    splits = imported(dest)
    assert splits == {
        "dev-clean": {
            "wav/dev-clean/84/121123/84-121123-0000.wav": "go do you hear",
            "wav/dev-clean/84/121123/84-121123-0001.wav": "but in less than five "
            "minutes the staircase groaned",
            "wav/dev-clean/84/121123/84-121123-0002.wav": "at three o'clock",
        },
        "test-other": {
            "wav/test-other/1688/142285/1688-142285-0000.wav": "there's iron they "
            "say in all our blood",
        },
    }
    problems = {(p["kind"], Path(p["source"].split(":")[0]).name) for p in report(dest)}
    assert problems == {
        ("unreadable_audio", "1688-142285.trans.txt"),
        ("missing_audio", "1688-142285.trans.txt"),
        ("unknown_characters", "1688-142285.trans.txt"),
    }
    unreadable = next(p for p in report(dest) if p["kind"] == "unreadable_audio")
    assert "1688-142285-0001.flac" in unreadable["message"]  # names the corrupt file
    summary = capsys.readouterr().out
    assert "imported 4 rows (dev-clean 3, test-other 1)" in summary
    assert "skipped 3 rows (1 missing_audio, 1 unknown_characters, 1 " in summary


def test_rerun_skips_finished_files_and_resume_after_interruption(tmp_path):
    source, dest = librispeech_tree(tmp_path / "src"), tmp_path / "out"
    options = dict(alphabet=english(), progress=False)
    found = librispeech.find(source, None)
    first = common.run_import(found.items, found.problems, dest, **options)
    assert (first.converted, first.reused) == (4, 0)
    csvs = {p.name: p.read_bytes() for p in dest.glob("*.csv")}
    wavs = sorted(dest.rglob("*.wav"))
    stamps = {p: p.stat().st_mtime_ns for p in wavs}

    again = common.run_import(found.items, found.problems, dest, **options)
    assert (again.converted, again.reused) == (0, 4)
    assert {p: p.stat().st_mtime_ns for p in wavs} == stamps
    assert {p.name: p.read_bytes() for p in dest.glob("*.csv")} == csvs

    # An interruption: one WAV never written, one cut short, the temporary file of a
    # third left behind, a CSV missing.
    wavs[0].unlink()
    whole = wavs[1].read_bytes()
    wavs[1].write_bytes(whole[: len(whole) // 2])
    stale = wavs[2].parent / f".{wavs[2].name}.abc123.tmp"
    stale.write_bytes(b"partial")
    (dest / "dev-clean.csv").unlink()
    resumed = common.run_import(
        found.items, found.problems, dest, jobs=2, **options
    )  # the process pool gives the same result as one process
    assert (resumed.converted, resumed.reused) == (2, 2)
    assert not stale.exists()
    assert wavs[1].read_bytes() == whole
    assert {p.name: p.read_bytes() for p in dest.glob("*.csv")} == csvs
    imported(dest)


def test_wav_is_complete(tmp_path):
    good = tmp_path / "good.wav"
    soundfile.write(str(good), np.zeros(1600, np.int16), 16000, subtype="PCM_16")
    assert common.wav_is_complete(good)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[:-10])
    assert not common.wav_is_complete(cut)
    for name, rate, subtype, channels in [
        ("rate.wav", 22050, "PCM_16", 1),
        ("float.wav", 16000, "FLOAT", 1),
        ("stereo.wav", 16000, "PCM_16", 2),
    ]:
        path = tmp_path / name
        zeros = np.zeros((1600, channels), np.float32)
        soundfile.write(str(path), zeros, rate, subtype=subtype)
        assert not common.wav_is_complete(path), name
    assert not common.wav_is_complete(tmp_path / "missing.wav")


# -- Common Voice ----------------------------------------------------------------------
CV_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\n"


def common_voice_tree(root: Path) -> Path:
    """``en/clips/*.mp3`` (48 kHz) and train/dev/test/validated TSVs."""
    source = root / "en"
    rows = {
        "train": [("a1.mp3", 'He said "hello" twice.'), ("a2.mp3", "It cost $20.")],
        "dev": [("b1.mp3", "Café at 9")],
        "test": [("c1.mp3", "Tokyo is 東京"), ("c2.mp3", "Missing clip")],
    }
    rows["validated"] = rows["train"] + rows["dev"]
    for split, split_rows in rows.items():
        lines = [CV_HEADER]
        for name, sentence in split_rows:
            lines.append(f"abc\t{name}\t{sentence}\t2\t0\t\t\t\n")
            if name != "c2.mp3":
                tone(source / "clips" / name, 48000, format="MP3")
        write(source / f"{split}.tsv", "".join(lines))
    write(source / "other.tsv", CV_HEADER)  # not imported: not in --splits
    return source


@pytest.mark.skipif(
    "MP3" not in soundfile.available_formats(), reason="libsndfile without MP3"
)
def test_common_voice_mp3(tmp_path):
    source, dest = common_voice_tree(tmp_path), tmp_path / "out"
    found = import_corpus.LAYOUTS["common-voice"].find(
        source, import_corpus.build_parser().parse_args(["common-voice", "s", "d"])
    )
    result = common.run_import(
        found.items,
        found.problems,
        dest,
        english(),
        progress=False,
        splits=found.splits,
    )
    # a1, a2 and b1 once each although validated.tsv repeats them; c1's text cannot
    # be spelled, so its audio is not converted.
    assert result.converted == 3
    assert imported(dest) == {
        "train": {
            "wav/a1.wav": "he said hello twice",
            "wav/a2.wav": "it cost twenty dollars",
        },
        "dev": {"wav/b1.wav": "cafe at nine"},
        "test": {},
        "validated": {
            "wav/a1.wav": "he said hello twice",
            "wav/a2.wav": "it cost twenty dollars",
            "wav/b1.wav": "cafe at nine",
        },
    }
    kinds = sorted((p["split"], p["kind"]) for p in report(dest))
    assert kinds == [("test", "missing_audio"), ("test", "unknown_characters")]
    # MP3 decoding keeps the duration: 0.5 s at 48 kHz -> about 8000 samples at 16 kHz
    # (the MP3 encoder's padding adds at most a few frames of 1152 samples).
    frames = soundfile.info(str(dest / "wav/a1.wav")).frames
    assert 8000 <= frames <= 8000 + 1152


def test_mp3_through_pyav_where_libsndfile_lacks_it(tmp_path, monkeypatch):
    pytest.importorskip("av")
    if "MP3" not in soundfile.available_formats():
        pytest.skip("no MP3 writer here to make the fixture")
    clip = tmp_path / "clip.mp3"
    tone(clip, 48000, format="MP3")
    by_libsndfile = common.load_source(clip)
    formats = {k: v for k, v in soundfile.available_formats().items() if k != "MP3"}
    monkeypatch.setattr(common.soundfile, "available_formats", lambda: formats)
    by_pyav = common.load_source(clip)
    assert by_pyav.dtype == np.float32 and by_pyav.ndim == 1
    # Both decoders see the same 0.5 s tone; they may differ in encoder padding.
    assert abs(by_pyav.size - by_libsndfile.size) < 1152
    assert np.isclose(np.sqrt(np.mean(by_pyav**2)), 0.3 / np.sqrt(2), rtol=0.1)
    corrupt(tmp_path / "bad.mp3")
    with pytest.raises(AudioError, match="bad.mp3"):
        common.load_source(tmp_path / "bad.mp3")
    monkeypatch.setitem(sys.modules, "av", None)  # as if PyAV were not installed
    with pytest.raises(AudioError, match="pip install av"):
        common.load_source(clip)


# -- LJSpeech --------------------------------------------------------------------------
def test_ljspeech_seeded_split(tmp_path):
    source = tmp_path / "LJSpeech-1.1"
    lines = []
    for index in range(20):
        key = f"LJ001-{index:04d}"
        tone(source / "wavs" / f"{key}.wav", 22050, seconds=1.0)
        lines.append(f'{key}|Printing, in 1 "sense"|Printing, in one "sense" {index}')
    lines.append("LJ002-0000|No audio for this one|No audio for this one")
    write(source / "metadata.csv", "\n".join(lines) + "\n")
    dest = tmp_path / "out"
    assert run("ljspeech", str(source), str(dest), "--seed", "3") == 0
    splits = imported(dest)
    assert {split: len(rows) for split, rows in splits.items()} == {
        "train": 18,
        "dev": 1,
        "test": 1,
    }
    every = {name: text for rows in splits.values() for name, text in rows.items()}
    assert every["wav/LJ001-0007.wav"] == "printing in one sense seven"
    assert [p["kind"] for p in report(dest)] == ["missing_audio"]
    # The same seed gives the same split; another seed another one.
    again, other = tmp_path / "again", tmp_path / "other"
    assert run("ljspeech", str(source), str(again), "--seed", "3") == 0
    assert imported(again) == splits
    assert run("ljspeech", str(source), str(other), "--seed", "4") == 0
    assert imported(other) != splits


# -- VCTK ------------------------------------------------------------------------------
def vctk_tree(root: Path) -> Path:
    """Release 0.92: ``txt/`` + ``wav48_silence_trimmed/`` FLAC at 48 kHz, two
    microphones; p315 has audio but no transcripts.
    """
    source = root / "VCTK-Corpus-0.92"
    for speaker in ("p225", "p226", "p227", "p228", "p315"):
        for number in range(1, 4):
            key = f"{speaker}_{number:03d}"
            if speaker != "p315":
                write(source / "txt" / speaker / f"{key}.txt", f"Please call {number}.")
            for mic in ("mic1", "mic2"):
                audio = source / "wav48_silence_trimmed" / speaker / f"{key}_{mic}.flac"
                level = 0.3 if mic == "mic1" else 0.1
                tone(audio, 48000, seconds=0.4, level=level, format="FLAC")
    write(source / "txt" / "p225" / "p225_009.txt", "No recording of this one.")
    return source


def test_vctk_split_by_speaker_and_by_utterance(tmp_path):
    source = vctk_tree(tmp_path)
    dest = tmp_path / "by_speaker"
    argv = ["vctk", str(source), str(dest), "--dev-fraction", "0.25"]
    assert run(*argv, "--test-fraction", "0.25") == 0
    splits = imported(dest)
    speakers = {
        split: {Path(name).parent.name for name in rows}
        for split, rows in splits.items()
    }
    assert sorted(len(s) for s in speakers.values()) == [1, 1, 2]
    assert set.union(*speakers.values()) == {"p225", "p226", "p227", "p228"}
    assert splits["train"] | splits["dev"] | splits["test"] == {
        f"wav/{s}/{s}_{n:03d}.wav": f"please call {w}"
        for s in ("p225", "p226", "p227", "p228")
        for n, w in ((1, "one"), (2, "two"), (3, "three"))
    }
    kinds = sorted(p["kind"] for p in report(dest))
    assert kinds == ["missing_audio"] + ["missing_transcript"] * 3
    assert peak(dest / "wav/p226/p226_002.wav") == pytest.approx(0.3, abs=0.01)

    by_utterance = tmp_path / "by_utterance"
    argv = ["vctk", str(source), str(by_utterance), "--split-by", "utterance"]
    assert run(*argv, "--mic", "mic2", "--dev-fraction", "0.25") == 0
    splits = imported(by_utterance)
    assert sum(len(rows) for rows in splits.values()) == 12
    speakers = [{Path(n).parent.name for n in rows} for rows in splits.values()]
    # Split by utterance, a speaker's recordings spread over several splits.
    assert any(a & b for i, a in enumerate(speakers) for b in speakers[i + 1 :])
    assert peak(by_utterance / "wav/p226/p226_002.wav") == pytest.approx(0.1, abs=0.01)


def peak(path: Path) -> float:
    samples, _ = soundfile.read(str(path), dtype="int16")
    return float(np.abs(samples.astype(np.float64)).max() / 32768)


# -- Speech Commands -------------------------------------------------------------------
def test_speech_commands_official_lists(tmp_path):
    source = tmp_path / "speech_commands_v0.02"
    for word in ("yes", "no", "left"):
        for speaker in ("0a7c2a8d", "0b09edd3", "0c2ca723"):
            tone(source / word / f"{speaker}_nohash_0.wav", 16000, seconds=1.0)
    tone(source / "_background_noise_" / "white_noise.wav", 16000, seconds=2.0)
    write(source / "validation_list.txt", "yes/0b09edd3_nohash_0.wav\n")
    write(
        source / "testing_list.txt",
        "no/0c2ca723_nohash_0.wav\nleft/0c2ca723_nohash_0.wav\n",
    )
    corrupt(source / "left" / "0d2bcf9a_nohash_1.wav")
    dest = tmp_path / "out"
    assert run("speech-commands", str(source), str(dest)) == 0
    splits = imported(dest)
    assert splits["dev"] == {"wav/yes/0b09edd3_nohash_0.wav": "yes"}
    assert splits["test"] == {
        "wav/left/0c2ca723_nohash_0.wav": "left",
        "wav/no/0c2ca723_nohash_0.wav": "no",
    }
    assert len(splits["train"]) == 6
    assert not any("background" in name for rows in splits.values() for name in rows)
    (problem,) = report(dest)
    assert problem["kind"] == "unreadable_audio"
    assert "0d2bcf9a_nohash_1.wav" in problem["message"]


# -- a folder of audio + transcripts ---------------------------------------------------
def test_folder_with_split_folders(tmp_path):
    source = tmp_path / "recordings"
    tone(source / "train" / "a.wav", 44100, seconds=1.0, channels=2)
    write(source / "train" / "a.txt", "Stereo at 44.1 kHz")
    tone(source / "train" / "deep" / "b.flac", 22050, format="FLAC")
    write(source / "train" / "deep" / "b.lab", "a label file")
    tone(source / "train" / "c.ogg", 48000, format="OGG")
    write(source / "train" / "c.txt", "vorbis audio")
    tone(source / "test" / "d.wav", 16000)
    write(source / "test" / "d.txt", "\ufeffOn 2nd May\n")
    tone(source / "test" / "e.wav", 16000)  # no transcript
    tone(source / "stray.wav", 16000)  # not under a split folder
    write(source / "stray.txt", "where does this go")
    dest = tmp_path / "out"
    assert run("folder", str(source), str(dest)) == 0
    assert imported(dest) == {
        "train": {
            "wav/train/a.wav": "stereo at forty four point one khz",
            "wav/train/deep/b.wav": "a label file",
            "wav/train/c.wav": "vorbis audio",
        },
        "test": {"wav/test/d.wav": "on second may"},
    }
    assert sorted(p["kind"] for p in report(dest)) == [
        "missing_transcript",
        "outside_splits",
    ]
    # The stereo 44.1 kHz tone became mono 16 kHz with the same duration and the
    # channels' mean level (1.0 and 0.7 of 0.3 -> 0.255 peak).
    samples, rate = soundfile.read(str(dest / "wav/train/a.wav"), dtype="int16")
    assert rate == 16000 and samples.ndim == 1 and samples.size == 16000
    assert peak(dest / "wav/train/a.wav") == pytest.approx(0.255, abs=0.01)


def test_folder_seeded_split_on_real_recordings(tmp_path, data_dir):
    """Kathleen's FLAC files and their own .txt transcripts, linked into one folder,
    import to the transcripts and lengths of the staged corpus.
    """
    root = data_dir / "kathleen_arctic"
    with (root / "train.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))[:6]
    source = tmp_path / "kathleen"
    source.mkdir()
    for row in rows:
        flac = root / row["wav_filename"]
        (source / flac.name).symlink_to(flac)
        (source / (flac.stem + ".txt")).symlink_to(
            root / "original_txt" / (flac.stem + ".txt")
        )
    dest = tmp_path / "out"
    assert run("folder", str(source), str(dest), "--dev-fraction", "0.2") == 0
    every = {
        Path(name).stem: text
        for split_rows in imported(dest).values()
        for name, text in split_rows.items()
    }
    assert every == {Path(r["wav_filename"]).stem: r["transcript"] for r in rows}
    for row in rows:
        stem = Path(row["wav_filename"]).stem
        staged = soundfile.info(str(root / row["wav_filename"]))
        ours = soundfile.info(str(dest / "wav" / f"{stem}.wav"))
        assert ours.frames == -(-staged.frames * 16000 // staged.samplerate)


# -- the command line ------------------------------------------------------------------
def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert run("librispeech", str(tmp_path / "nowhere"), str(tmp_path / "out")) == 2
    error = capsys.readouterr().err
    assert "nowhere: not a folder" in error and "Traceback" not in error
    assert run("ljspeech", str(tmp_path), str(tmp_path / "out")) == 2
    assert "metadata.csv: not found" in capsys.readouterr().err
    bad_alphabet = tmp_path / "alphabet.txt"
    bad_alphabet.write_text("a\na\n", encoding="utf-8")
    source = librispeech_tree(tmp_path / "src")
    argv = ["librispeech", str(source), str(tmp_path / "out")]
    assert run(*argv, "--alphabet", str(bad_alphabet)) == 2
    assert "alphabet.txt:2" in capsys.readouterr().err
    argv = ["ljspeech", str(tmp_path), str(tmp_path / "out"), "--test-fraction", "1.5"]
    write(tmp_path / "metadata.csv", "LJ1|a|a\n")
    assert run(*argv) == 2
    assert "test_fraction must be in [0, 1)" in capsys.readouterr().err
    assert import_corpus.main([*argv[:3], "--jobs", "0"]) == 2
    assert "--jobs must be at least 1, got 0" in capsys.readouterr().err


def test_cli_as_a_script_with_an_alphabet_file(tmp_path):
    source = tmp_path / "src"
    tone(source / "x.wav", 8000)
    write(source / "x.txt", "Hello World")
    alphabet = tmp_path / "alphabet.txt"
    alphabet.write_text(" \nD\nE\nH\nL\nO\nR\nW\n", encoding="utf-8")
    dest = tmp_path / "out"
    command = [sys.executable, str(REPO / "tools" / "import_corpus.py"), "folder"]
    command += [str(source), str(dest), "--alphabet", str(alphabet), "--jobs", "2"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "imported 1 rows (train 1, dev 0, test 0)" in done.stdout
    with (dest / "train.csv").open(encoding="utf-8") as handle:
        assert list(csv.reader(handle))[1][2] == "HELLO WORLD"


def test_the_package_never_imports_the_tools():
    pattern = re.compile(r"^\s*(from|import)\s+tools\b", re.MULTILINE)
    sources = list((REPO / "npspeech").rglob("*.py"))
    assert sources
    assert [p for p in sources if pattern.search(p.read_text(encoding="utf-8"))] == []

"""Corpus CSVs, corpus validation, the feature cache, bucketing and the batch loader."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import given, settings
from hypothesis import strategies as st

from npspeech import features as frontend
from npspeech.alphabet import Alphabet, english
from npspeech.augment import AugmentConfig
from npspeech.config import FeatureConfig
from npspeech.data import (
    BatchLoader,
    FeatureCache,
    Utterance,
    check_corpus,
    collate,
    ctc_min_frames,
    feature_stats,
    make_batches,
    read_csvs,
    validate_corpus,
)
from npspeech.errors import DataError

# DeepSpeech's MFCC: a 512-sample window every 320 samples at 16 kHz.
CONFIG = FeatureConfig()


def n_frames(n_samples: int) -> int:
    return int(frontend.n_frames(n_samples, CONFIG))


# -- helpers ---------------------------------------------------------------------------
def write_wav(path, seconds, rng, rate=16_000):
    path.parent.mkdir(parents=True, exist_ok=True)
    signal = 0.1 * rng.standard_normal(int(round(seconds * rate)))
    soundfile.write(str(path), signal.astype(np.float32), rate, subtype="PCM_16")
    return path


def write_csv(path, rows, header="wav_filename,wav_filesize,transcript"):
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [header] + [",".join(str(field) for field in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_corpus(tmp_path, rng, seconds):
    """A CSV with one clean 16 kHz utterance per entry of ``seconds``."""
    rows = []
    for i, duration in enumerate(seconds):
        wav = write_wav(tmp_path / "wav" / f"u{i}.wav", duration, rng)
        rows.append((f"wav/u{i}.wav", wav.stat().st_size, "hello world"[: 1 + i % 11]))
    return read_csvs([write_csv(tmp_path / "corpus.csv", rows)])


# -- reading CSVs ----------------------------------------------------------------------
@pytest.mark.data
def test_read_real_csvs(data_dir):
    smoke = data_dir / "deepspeech_smoke" / "ldc93s1.csv"
    (row,) = read_csvs([smoke])
    assert (
        row.audio_path
        == (data_dir / "deepspeech_smoke" / "wav" / "LDC93S1.wav").resolve()
    )
    assert row.audio_path.is_absolute() and row.audio_path.is_file()
    assert row.transcript == "she had your dark suit in greasy wash water all year"
    assert row.size_bytes == 93638 == row.audio_path.stat().st_size
    assert row.source == f"{smoke}:2"

    arctic = read_csvs([data_dir / "kathleen_arctic" / "dev.csv"])
    lines = (data_dir / "kathleen_arctic" / "dev.csv").read_text().splitlines()
    assert len(arctic) == len(lines) - 1 == 114
    assert all(
        u.audio_path.suffix == ".flac" and u.audio_path.is_file() for u in arctic
    )
    assert (
        arctic[0].transcript == "he turned sharply and faced gregson across the table"
    )

    fsdd = read_csvs([data_dir / "fsdd" / "test.csv"])
    assert len(fsdd) == 300
    assert fsdd[0].audio_path == (data_dir / "fsdd" / "recordings" / "0_george_0.wav")
    assert soundfile.info(str(fsdd[0].audio_path)).samplerate == 8000


@pytest.mark.data
def test_several_csvs_concatenate_in_order(data_dir):
    first = data_dir / "deepspeech_smoke" / "test.csv"
    second = data_dir / "deepspeech_smoke" / "ldc93s1.csv"
    both = read_csvs([first, second])
    assert both == read_csvs([first]) + read_csvs([second])
    assert [u.source for u in both] == [f"{first}:{i}" for i in (2, 3, 4)] + [
        f"{second}:2"
    ]


def test_paths_are_relative_to_the_csv_not_the_working_directory(
    tmp_path, rng, monkeypatch
):
    wav = write_wav(tmp_path / "audio" / "a.wav", 0.5, rng)
    csv_path = write_csv(
        tmp_path / "lists" / "train.csv",
        [("../audio/a.wav", 123, "yes"), (wav.resolve(), 5, "absolute")],
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    relative, absolute = read_csvs([os.path.relpath(csv_path, elsewhere)])
    assert relative.audio_path == absolute.audio_path == wav.resolve()
    assert relative.size_bytes == 123


def test_csv_quoting_extra_columns_and_empty_size(tmp_path, rng):
    wav = write_wav(tmp_path / "a.wav", 0.5, rng)
    csv_path = tmp_path / "c.csv"
    csv_path.write_text(
        "\ufeffspeaker,wav_filename,wav_filesize,transcript\n"
        'x,a.wav,,"hello, world"\n'
        "\n"
        "y,a.wav,77,plain\n",
        encoding="utf-8",
    )
    first, second = read_csvs([csv_path])
    assert first.transcript == "hello, world"
    assert first.size_bytes == wav.stat().st_size  # empty column: taken from the file
    assert second.size_bytes == 77
    assert second.source == f"{csv_path}:4"  # the blank line still counts


def test_malformed_rows_are_all_reported_with_their_lines(tmp_path):
    csv_path = write_csv(
        tmp_path / "bad.csv",
        [
            ("a.wav", 10, "fine"),
            ("b.wav", "ten", "size not a number"),
            ("c.wav", 10, "unquoted", "comma"),
            ("", 10, "no file name"),
            ("d.wav", -4, "negative size"),
        ],
    )
    with pytest.raises(DataError) as caught:
        read_csvs([csv_path])
    message = str(caught.value)
    assert "4 malformed row(s)" in message
    for line, words in [
        (3, "'ten'"),
        (4, "4 fields"),
        (5, "empty wav_filename"),
        (6, "'-4'"),
    ]:
        assert f"{csv_path}:{line}: " in message and words in message
    assert f"{csv_path}:2:" not in message


def test_bad_headers_and_files(tmp_path):
    wrong = write_csv(tmp_path / "h.csv", [("a.wav", "hi")], header="path,text")
    with pytest.raises(
        DataError, match=r"h\.csv:1: header lacks column\(s\) wav_filename"
    ):
        read_csvs([wrong])
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.csv: empty file"):
        read_csvs([empty])
    with pytest.raises(DataError, match="missing.csv: corpus CSV not found"):
        read_csvs([tmp_path / "missing.csv"])
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"wav_filename,wav_filesize,transcript\na.wav,1,caf\xe9\n")
    with pytest.raises(DataError, match="latin.csv: not UTF-8"):
        read_csvs([latin])
    with pytest.raises(DataError, match="no corpus CSV"):
        read_csvs([])


# -- validation ------------------------------------------------------------------------
def test_ctc_min_frames_counts_a_blank_between_repeats():
    assert ctc_min_frames(np.array([], dtype=np.int32)) == 0
    assert ctc_min_frames(np.array([3])) == 1
    assert ctc_min_frames(np.array([1, 1, 2])) == 4
    assert (
        ctc_min_frames(english().encode("hello  all")) == 10 + 3
    )  # ll, two spaces, ll


@pytest.fixture
def bad_corpus(tmp_path, rng):
    """Two good rows and one row per problem kind (plus one with two problems)."""
    write_wav(tmp_path / "good1.wav", 1.0, rng)
    write_wav(tmp_path / "good2.wav", 0.5, rng, rate=8000)
    write_wav(tmp_path / "short.wav", 0.1, rng)  # 0.1 s -> 3 frames
    soundfile.write(str(tmp_path / "empty.wav"), np.zeros(0, np.float32), 16_000)
    (tmp_path / "text.wav").write_text("not audio at all")
    rows = [
        ("good1.wav", 1, "hello world"),  # line 2
        ("nowhere.wav", 1, "missing file"),  # line 3
        ("text.wav", 1, "unreadable"),  # line 4
        ("good1.wav", 1, " "),  # line 5: empty transcript
        ("good1.wav", 1, "caf\u00e9 #1"),  # line 6: three unknown characters
        ("short.wav", 1, "much too long for a tenth of a second"),  # line 7
        ("empty.wav", 1, "no samples"),  # line 8
        ("nowhere2.wav", 1, "Upper"),  # line 9: missing and unknown 'U'
        ("good2.wav", 1, "ok"),  # line 10
    ]
    return read_csvs([write_csv(tmp_path / "corpus.csv", rows)])


def test_check_corpus_finds_every_problem_at_once(bad_corpus):
    good, problems, durations = check_corpus(
        bad_corpus, english(), CONFIG, progress=False
    )
    csv_path = str(bad_corpus[0].source).rsplit(":", 1)[0]
    found = sorted((p.source.rsplit(":", 1)[1], p.kind) for p in problems)
    assert found == sorted(
        [
            ("3", "missing_audio"),
            ("4", "unreadable_audio"),
            ("5", "empty_transcript"),
            ("6", "unknown_characters"),
            ("7", "transcript_too_long"),
            ("8", "empty_audio"),
            ("9", "missing_audio"),
            ("9", "unknown_characters"),
        ]
    )
    assert all(p.source.startswith(csv_path + ":") for p in problems)
    unknown = next(p for p in problems if p.source.endswith(":6"))
    for named in ["'\u00e9' (U+00E9) at 3", "'#' (U+0023) at 5", "'1' (U+0031) at 6"]:
        assert named in unknown.message
    too_long = next(p for p in problems if p.kind == "transcript_too_long")
    needed = ctc_min_frames(english().encode("much too long for a tenth of a second"))
    assert f"needs {needed} frames" in too_long.message
    assert f"gives {n_frames(1600)}" in too_long.message
    assert [u.source.rsplit(":", 1)[1] for u in good] == ["2", "10"]
    assert durations == pytest.approx([1.0, 0.5])


def test_validate_corpus_raises_listing_every_problem(bad_corpus):
    with pytest.raises(DataError) as caught:
        validate_corpus(bad_corpus, english(), CONFIG, progress=False)
    message = str(caught.value)
    assert message.startswith("7 of 9 corpus rows have problems")
    assert "1 empty_audio" in message and "2 missing_audio" in message
    for line in range(3, 10):
        assert f"corpus.csv:{line}: " in message
    assert "nowhere.wav not found" in message
    assert "corpus.csv:2:" not in message and "corpus.csv:10:" not in message


def test_validate_corpus_listing_is_capped(tmp_path):
    rows = [(f"missing{i}.wav", 1, "x") for i in range(60)]
    corpus = read_csvs([write_csv(tmp_path / "c.csv", rows)])
    with pytest.raises(DataError) as caught:
        validate_corpus(corpus, english(), CONFIG, progress=False)
    message = str(caught.value)
    assert "missing59.wav" not in message and "... and 10 more" in message


def test_skip_bad_keeps_good_rows_and_says_how_many(bad_corpus):
    with pytest.warns(UserWarning, match="skipped 7 of 9 corpus rows"):
        good, durations = validate_corpus(
            bad_corpus, english(), CONFIG, skip_bad=True, progress=False
        )
    assert [u.transcript for u in good] == ["hello world", "ok"]
    assert durations == pytest.approx([1.0, 0.5])
    with pytest.raises(DataError, match="no usable rows"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        validate_corpus(
            bad_corpus[1:8], english(), CONFIG, skip_bad=True, progress=False
        )


def test_checking_reads_headers_only_and_shows_progress(
    bad_corpus, monkeypatch, capsys
):
    def no_decoding(*args, **kwargs):
        raise AssertionError("check_corpus decoded audio")

    monkeypatch.setattr(soundfile, "read", no_decoding)
    monkeypatch.setattr(soundfile.SoundFile, "read", no_decoding)
    check_corpus(bad_corpus, english(), CONFIG, progress=False)
    assert "checking audio" not in capsys.readouterr().err
    check_corpus(bad_corpus, english(), CONFIG, progress=True)
    assert "checking audio" in capsys.readouterr().err


@pytest.mark.data
def test_validate_real_corpora(data_dir):
    alphabet = Alphabet.from_file(data_dir / "deepspeech_smoke" / "alphabet.txt")
    smoke = read_csvs([data_dir / "deepspeech_smoke" / "test.csv"])
    good, durations = validate_corpus(smoke, alphabet, CONFIG, progress=False)
    assert good == smoke
    assert durations == pytest.approx([46797 / 16000, 3.59, 3.96], abs=0.01)
    fsdd = read_csvs([data_dir / "fsdd" / "test.csv"])
    good, durations = validate_corpus(fsdd, alphabet, CONFIG, progress=False)
    assert len(good) == 300 and min(durations) > 0.1
    first = soundfile.info(str(fsdd[0].audio_path))
    assert durations[0] == pytest.approx(first.frames / 8000)
    arctic = read_csvs([data_dir / "kathleen_arctic" / "dev.csv"])
    good, durations = validate_corpus(arctic, alphabet, CONFIG, progress=False)
    assert len(good) == 114 and 1.0 < np.mean(durations) < 6.0


# -- feature cache ---------------------------------------------------------------------
def test_cache_hit_returns_the_same_features(tmp_path, rng):
    utterance = make_corpus(tmp_path, rng, [0.7])[0]
    cache = FeatureCache(CONFIG)
    first = cache.get(utterance)
    second = cache.get(utterance)
    assert first is second and cache.computed == 1
    assert first.dtype == np.float32 and first.shape == (n_frames(11200), CONFIG.n_mfcc)
    assert not first.flags.writeable
    np.testing.assert_array_equal(first, cache.compute(utterance))


def test_disk_cache_survives_a_new_instance(tmp_path, rng):
    utterance = make_corpus(tmp_path, rng, [0.6])[0]
    folder = tmp_path / "cache"
    original = FeatureCache(CONFIG, folder).get(utterance)
    assert len(list(folder.glob("*.npy"))) == 1
    assert not list(folder.glob("*.tmp"))
    reborn = FeatureCache(CONFIG, folder)
    again = reborn.get(utterance)
    assert reborn.computed == 0 and reborn.disk_hits == 1
    np.testing.assert_array_equal(again, original)


def test_disk_cache_key_follows_file_and_settings(tmp_path, rng):
    utterance = make_corpus(tmp_path, rng, [0.6])[0]
    cache = FeatureCache(CONFIG, tmp_path / "cache")
    key = cache.key(utterance)
    other = FeatureCache(FeatureConfig(n_mfcc=13), tmp_path / "cache")
    assert other.key(utterance) != key
    assert other.get(utterance).shape[1] == 13
    # n_context is not applied by the cache, so it does not change the key.
    assert FeatureCache(FeatureConfig(n_context=9)).key(utterance) == key
    # Rewriting the audio changes size/mtime and so the key: never a stale hit.
    write_wav(utterance.audio_path, 0.9, rng)
    os.utime(utterance.audio_path, ns=(1, 10**18))
    assert cache.key(utterance) != key
    assert cache.get(utterance).shape[0] == n_frames(14400)


def test_damaged_disk_entry_is_recomputed(tmp_path, rng):
    utterance = make_corpus(tmp_path, rng, [0.6])[0]
    folder = tmp_path / "cache"
    good = FeatureCache(CONFIG, folder).get(utterance)
    (entry,) = folder.glob("*.npy")
    entry.write_bytes(b"\x93NUMPY garbage")
    cache = FeatureCache(CONFIG, folder)
    np.testing.assert_array_equal(cache.get(utterance), good)
    assert cache.computed == 1
    np.testing.assert_array_equal(np.load(entry), good)  # rewritten whole


def test_memory_limit_evicts_least_recently_used(tmp_path, rng):
    corpus = make_corpus(tmp_path, rng, [0.5, 0.5, 0.5])
    one = FeatureCache(CONFIG).get(corpus[0]).nbytes
    cache = FeatureCache(CONFIG, max_memory_bytes=2 * one)
    for utterance in corpus:
        cache.get(utterance)
    assert cache.computed == 3
    cache.get(corpus[2])
    assert cache.computed == 3  # still in memory
    cache.get(corpus[0])
    assert cache.computed == 4  # evicted first


def test_global_normalisation_with_corpus_statistics(tmp_path, rng):
    corpus = make_corpus(tmp_path, rng, [0.5, 0.8])
    stats = feature_stats(corpus, FeatureConfig(normalize="global"), progress=False)
    raw = np.concatenate([FeatureCache(CONFIG).get(u) for u in corpus]).astype(float)
    np.testing.assert_allclose(stats.mean, raw.mean(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stats.std, raw.std(axis=0), rtol=1e-5, atol=1e-6)
    config = FeatureConfig(normalize="global")
    cache = FeatureCache(config, stats=stats)
    normalised = np.concatenate([cache.get(u) for u in corpus])
    np.testing.assert_allclose(normalised.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(normalised.std(axis=0), 1.0, atol=1e-4)
    other = frontend.FeatureStats().update(raw[:10])
    assert FeatureCache(config, stats=other).key(corpus[0]) != cache.key(corpus[0])


# -- bucketing -------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 400), min_size=1, max_size=80),
    budget=st.integers(1, 1500),
    max_batch_size=st.one_of(st.none(), st.integers(1, 9)),
    seed=st.integers(0, 2**32),
    epoch=st.integers(0, 5),
)
def test_batches_respect_budget_and_cover_each_utterance_once(
    lengths, budget, max_batch_size, seed, epoch
):
    batches = make_batches(
        lengths, budget, max_batch_size=max_batch_size, seed=seed, epoch=epoch
    )
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert batch
        if len(batch) > 1:  # a lone over-long utterance is the only exception
            assert max(max(lengths[i], 1) for i in batch) * len(batch) <= budget
        if max_batch_size is not None:
            assert len(batch) <= max_batch_size


def test_batching_is_deterministic_and_sortagrad_then_shuffled(rng):
    lengths = rng.integers(20, 500, size=200)
    plan = {e: make_batches(lengths, 2000, seed=7, epoch=e) for e in range(4)}
    for epoch in range(4):
        assert make_batches(lengths, 2000, seed=7, epoch=epoch) == plan[epoch]
    longest = [max(lengths[i] for i in batch) for batch in plan[0]]
    assert longest == sorted(longest)  # SortaGrad: shortest batches first
    assert plan[1] != plan[2] and plan[1] != plan[0] and plan[2] != plan[3]
    assert make_batches(lengths, 2000, seed=8, epoch=1) != plan[1]
    # Same packing every epoch: the number of batches does not change.
    assert len({len(p) for p in plan.values()}) == 1
    without = make_batches(lengths, 2000, seed=7, epoch=0, sortagrad=False)
    assert without != plan[0]


def test_equal_lengths_mix_across_epochs_and_sorted_order_without_shuffle():
    lengths = [100] * 40
    first = make_batches(lengths, 1000, seed=1, epoch=1)
    second = make_batches(lengths, 1000, seed=1, epoch=2)
    assert {frozenset(b) for b in first} != {frozenset(b) for b in second}
    fixed = make_batches([5, 3, 9, 3], 6, seed=1, epoch=3, shuffle=False)
    assert fixed == [[1, 3], [0], [2]]
    assert make_batches([5, 3, 9, 3], 6, seed=2, epoch=0, shuffle=False) == fixed


def test_an_over_long_utterance_gets_its_own_batch():
    batches = make_batches([10, 10, 5000, 10], 100, seed=0, epoch=0)
    assert [2] in batches and sorted(map(sorted, batches)) == [[0, 1, 3], [2]]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"frames_budget": 0}, "frames_budget"),
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"seed": -1}, "seed"),
    ],
)
def test_make_batches_rejects_bad_arguments(kwargs, match):
    from npspeech.errors import ConfigError

    arguments = {"frames_budget": 100, "max_batch_size": None, "seed": 0}
    arguments.update(kwargs)
    budget = arguments.pop("frames_budget")
    with pytest.raises(ConfigError, match=match):
        make_batches([1, 2], budget, **arguments)
    with pytest.raises(ConfigError, match="finite"):
        make_batches([1, -2], 100)


# -- batches ---------------------------------------------------------------------------
def test_collate_pads_with_zeros_and_flattens_targets():
    features = [np.full((3, 2), 1.0, np.float32), np.full((5, 2), 2.0, np.float32)]
    targets = [np.array([1, 2], np.int32), np.array([3], np.int32)]
    rows = [Utterance(Path("/a"), "ab", "x:2", 1), Utterance(Path("/b"), "c", "x:3", 1)]
    batch = collate(features, targets, rows)
    assert batch.features.shape == (5, 2, 2) and batch.features.dtype == np.float32
    assert batch.lengths.tolist() == [3, 5] and batch.lengths.dtype == np.int32
    assert np.all(batch.features[:3, 0] == 1.0) and np.all(batch.features[3:, 0] == 0.0)
    assert np.all(batch.features[:, 1] == 2.0)
    assert batch.targets.tolist() == [1, 2, 3] and batch.targets.dtype == np.int32
    assert batch.target_lengths.tolist() == [2, 1] and batch.transcripts == ["ab", "c"]


@pytest.fixture
def corpus(tmp_path, rng):
    seconds = rng.uniform(0.3, 1.6, size=14).round(3)
    return make_corpus(tmp_path, rng, seconds), seconds


def test_loader_batches_hold_each_utterance_once_padded_and_encoded(corpus):
    rows, seconds = corpus
    cache = FeatureCache(CONFIG)
    loader = BatchLoader(
        rows, english(), CONFIG, cache, frames_budget=200, seed=3, durations=seconds
    )
    for epoch in (0, 1):
        seen = []
        for batch, plan in zip(loader.iterate(epoch), loader.epoch_batches(epoch)):
            assert [rows[i] for i in plan] == batch.utterances
            T, B, F = batch.features.shape
            assert B == len(plan) and F == CONFIG.n_mfcc
            assert B == 1 or T * B <= 200
            offset = 0
            for b, utterance in enumerate(batch.utterances):
                clean = cache.get(utterance)
                assert batch.lengths[b] == clean.shape[0] == loader.frames[plan[b]]
                np.testing.assert_array_equal(
                    batch.features[: clean.shape[0], b], clean
                )
                assert not batch.features[clean.shape[0] :, b].any()
                target = english().encode(utterance.transcript)
                L = batch.target_lengths[b]
                np.testing.assert_array_equal(
                    batch.targets[offset : offset + L], target
                )
                offset += L
            assert offset == batch.targets.size
            seen.extend(batch.utterances)
        assert sorted(u.source for u in seen) == sorted(u.source for u in rows)
    assert (
        len(loader) == len(loader.epoch_batches(0)) == len(loader.epoch_batches(5)) > 2
    )


def test_loader_reads_durations_itself(corpus):
    rows, seconds = corpus
    given_durations = BatchLoader(
        rows,
        english(),
        CONFIG,
        FeatureCache(CONFIG),
        frames_budget=300,
        durations=seconds,
    )
    probed = BatchLoader(
        rows, english(), CONFIG, FeatureCache(CONFIG), frames_budget=300
    )
    np.testing.assert_array_equal(probed.frames, given_durations.frames)
    assert probed.epoch_batches(2) == given_durations.epoch_batches(2)


def test_resume_mid_epoch_gives_the_same_batches(corpus):
    rows, seconds = corpus
    augmentation = AugmentConfig(
        spec_augment_probability=0.7,
        volume_probability=0.5,
        noise_probability=0.5,
        speed_probability=0.5,
    )

    def loader(prefetch):
        return BatchLoader(
            rows,
            english(),
            CONFIG,
            FeatureCache(CONFIG),
            frames_budget=250,
            seed=11,
            augmentation=augmentation,
            durations=seconds,
            prefetch=prefetch,
        )

    full = list(loader(True).iterate(2))
    assert len(full) >= 4
    for start in (0, 2, len(full) - 1, len(full)):
        resumed = list(loader(True).iterate(2, start=start))
        assert len(resumed) == len(full) - start
        for a, b in zip(resumed, full[start:]):
            assert a.utterances == b.utterances
            np.testing.assert_array_equal(a.features, b.features)
            np.testing.assert_array_equal(a.lengths, b.lengths)
            np.testing.assert_array_equal(a.targets, b.targets)
    serial = list(loader(False).iterate(2))
    for a, b in zip(serial, full):
        np.testing.assert_array_equal(a.features, b.features)
    # Augmentation did something: some batch differs from the clean features.
    clean = list(
        BatchLoader(
            rows,
            english(),
            CONFIG,
            FeatureCache(CONFIG),
            frames_budget=250,
            seed=11,
            durations=seconds,
        ).iterate(2)
    )
    assert any(
        a.features.shape != b.features.shape
        or not np.array_equal(a.features, b.features)
        for a, b in zip(full, clean)
    )


def test_speed_perturbation_stays_within_the_budget(corpus):
    rows, seconds = corpus
    augmentation = AugmentConfig(speed_probability=1.0, speed_range=(0.8, 0.85))
    loader = BatchLoader(
        rows,
        english(),
        CONFIG,
        FeatureCache(CONFIG),
        frames_budget=260,
        augmentation=augmentation,
        durations=seconds,
    )
    planned = loader.frames
    for batch, plan in zip(loader.iterate(1), loader.epoch_batches(1)):
        assert np.all(batch.lengths <= planned[plan])
        assert np.all(batch.lengths > n_frames_for(seconds[plan] * 16_000 / 0.86))
        assert len(plan) == 1 or batch.features.shape[0] * len(plan) <= 260


def n_frames_for(samples):
    return np.array([n_frames(int(s)) for s in samples])


def test_loader_rejects_unspellable_transcripts(tmp_path, rng):
    write_wav(tmp_path / "a.wav", 0.5, rng)
    rows = read_csvs(
        [write_csv(tmp_path / "c.csv", [("a.wav", 1, "ok"), ("a.wav", 1, "N0")])]
    )
    with pytest.raises(DataError, match=r"c\.csv:3: character 'N'"):
        BatchLoader(rows, english(), CONFIG, FeatureCache(CONFIG), durations=[0.5, 0.5])


def test_speed_up_is_dropped_where_ctc_could_no_longer_align(tmp_path, rng):
    write_wav(tmp_path / "a.wav", 0.5, rng)  # 24 frames
    rows = read_csvs(
        [
            write_csv(
                tmp_path / "c.csv",
                [("a.wav", 1, "abcdefghijklmnopqrstuvwx"), ("a.wav", 1, "ab")],
            )
        ]
    )
    augmentation = AugmentConfig(speed_probability=1.0, speed_range=(1.3, 1.3))
    loader = BatchLoader(
        rows,
        english(),
        CONFIG,
        FeatureCache(CONFIG),
        augmentation=augmentation,
        durations=[0.5, 0.5],
        shuffle=False,
    )
    (batch,) = list(loader.iterate(0))
    clean = n_frames(8000)
    assert ctc_min_frames(english().encode(rows[0].transcript)) == clean == 24
    lengths = dict(zip((u.transcript for u in batch.utterances), batch.lengths))
    assert lengths[rows[0].transcript] == clean  # left at its own speed
    assert lengths["ab"] == n_frames(math.ceil(8000 / 1.3))  # sped up

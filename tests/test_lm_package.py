"""Scorer files: open_scorer on every kind, npspeech packages, stored alpha/beta."""

from __future__ import annotations

import gzip
import json
import shutil
import struct
from pathlib import Path

import pytest

from npspeech.errors import ScorerError
from npspeech.lm.build import build_arpa, read_text_lines, write_arpa
from npspeech.lm.package import (
    PACKAGE_MAGIC,
    ScorerFile,
    describe,
    open_scorer,
    read_package,
    set_scorer_parameters,
    write_package,
)

CORPUS = Path(__file__).parent / "data" / "lm" / "tiny_corpus.txt"
TRIE_OFFSET = 266_112  # where pruned_lm.scorer's KenLM model ends


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Unpacked package LMs go to a per-test folder, never to the user's cache."""
    monkeypatch.setenv("NPSPEECH_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def arpa_path(tmp_path):
    model = build_arpa(read_text_lines([CORPUS]), order=3)
    return write_arpa(model, tmp_path / "tiny.arpa")


@pytest.fixture
def ds_scorer_path(data_dir, tmp_path):
    target = tmp_path / "smoke.scorer"
    shutil.copyfile(data_dir / "deepspeech_smoke" / "lm" / "pruned_lm.scorer", target)
    return target


def test_open_arpa(arpa_path):
    scorer = open_scorer(arpa_path)
    assert isinstance(scorer, ScorerFile)
    assert scorer.kind == "arpa"
    assert scorer.order == 3
    assert scorer.language_model_path == arpa_path
    assert (scorer.alpha, scorer.beta) == (None, None)
    assert "cat" in scorer.vocabulary and "mat" in scorer.vocabulary
    assert not {"<s>", "</s>", "<unk>"} & set(scorer.vocabulary)
    assert list(scorer.vocabulary) == sorted(scorer.vocabulary)


def test_open_gzip_arpa(arpa_path, tmp_path):
    compressed = tmp_path / "tiny.arpa.gz"
    compressed.write_bytes(gzip.compress(arpa_path.read_bytes()))
    assert open_scorer(compressed).vocabulary == open_scorer(arpa_path).vocabulary


@pytest.mark.data
def test_open_deepspeech_scorer_and_bare_kenlm(ds_scorer_path, tmp_path):
    scorer = open_scorer(ds_scorer_path)
    assert scorer.kind == "deepspeech"
    assert scorer.order == 4
    assert scorer.alpha == 0.75
    assert scorer.beta == pytest.approx(1.85, abs=1e-7)
    assert len(scorer.vocabulary) == 3540
    assert scorer.language_model_path == ds_scorer_path
    bare = tmp_path / "bare.klm"
    bare.write_bytes(ds_scorer_path.read_bytes()[:TRIE_OFFSET])
    plain = open_scorer(bare)
    assert (plain.kind, plain.order, plain.vocabulary, plain.alpha) == (
        "kenlm_binary",
        4,
        None,
        None,
    )


def test_package_round_trip(arpa_path, tmp_path):
    kenlm = pytest.importorskip("kenlm")
    package = write_package(tmp_path / "tiny.npscorer", arpa_path, alpha=0.8, beta=1.5)
    opened = open_scorer(package)
    assert opened.kind == "npspeech"
    assert (opened.alpha, opened.beta, opened.order) == (0.8, 1.5, 3)
    assert opened.vocabulary == open_scorer(arpa_path).vocabulary
    # The unpacked LM is the ARPA file byte for byte, in the cache folder.
    assert opened.language_model_path.parent == tmp_path / "cache" / "lm"
    assert opened.language_model_path.read_bytes() == arpa_path.read_bytes()
    sentence = "the cat sat on the mat"
    assert kenlm.Model(str(opened.language_model_path)).score(sentence) == kenlm.Model(
        str(arpa_path)
    ).score(sentence)
    # The header is the documented one: magic, version 1, then JSON metadata.
    raw = package.read_bytes()
    magic, version, _, metadata_length, lm_length = struct.unpack_from("<8sIIQQ", raw)
    assert (magic, version, lm_length) == (PACKAGE_MAGIC, 1, arpa_path.stat().st_size)
    metadata = json.loads(raw[32 : 32 + metadata_length])
    assert metadata["lm_format"] == "arpa" and metadata["alpha"] == 0.8
    # Opening again reuses the unpacked file.
    assert open_scorer(package).language_model_path == opened.language_model_path


def test_untuned_package_and_explicit_vocabulary(arpa_path, tmp_path):
    package = write_package(
        tmp_path / "p.npscorer", arpa_path, vocabulary=["b", "a", "a"]
    )
    opened = open_scorer(package)
    assert (opened.alpha, opened.beta) == (None, None)
    assert opened.vocabulary == ("a", "b")


@pytest.mark.data
def test_package_of_a_deepspeech_scorer_keeps_its_parameters(ds_scorer_path, tmp_path):
    kenlm = pytest.importorskip("kenlm")
    package = write_package(tmp_path / "smoke.npscorer", ds_scorer_path)
    opened = open_scorer(package)
    assert opened.alpha == 0.75 and len(opened.vocabulary) == 3540
    assert read_package(package).metadata["lm_format"] == "kenlm_binary"
    model = kenlm.Model(str(opened.language_model_path))
    assert model.order == 4


def test_set_parameters_on_a_package(arpa_path, tmp_path):
    package = write_package(tmp_path / "p.npscorer", arpa_path, alpha=0.1, beta=0.2)
    before = read_package(package)
    set_scorer_parameters(package, 2.5, -1.0)
    after = read_package(package)
    assert (after.metadata["alpha"], after.metadata["beta"]) == (2.5, -1.0)
    assert after.metadata["vocabulary"] == before.metadata["vocabulary"]
    assert (
        open_scorer(package).language_model_path.read_bytes() == arpa_path.read_bytes()
    )
    elsewhere = set_scorer_parameters(package, 3.0, 4.0, output=tmp_path / "q.npscorer")
    assert open_scorer(elsewhere).alpha == 3.0
    assert open_scorer(package).alpha == 2.5


@pytest.mark.data
def test_set_parameters_on_a_deepspeech_scorer(ds_scorer_path):
    set_scorer_parameters(ds_scorer_path, 1.5, 2.5)
    reopened = open_scorer(ds_scorer_path)
    assert (reopened.kind, reopened.alpha, reopened.beta) == ("deepspeech", 1.5, 2.5)


def test_set_parameters_on_arpa_needs_an_output(arpa_path, tmp_path):
    with pytest.raises(ScorerError, match="cannot hold alpha/beta"):
        set_scorer_parameters(arpa_path, 1.0, 1.0)
    written = set_scorer_parameters(arpa_path, 1.0, 2.0, output=tmp_path / "t.npscorer")
    assert open_scorer(written).kind == "npspeech"
    with pytest.raises(ScorerError, match="finite"):
        set_scorer_parameters(
            arpa_path, float("nan"), 1.0, output=tmp_path / "u.npscorer"
        )


def _corrupt(path: Path, offset: int, value: bytes) -> None:
    data = bytearray(path.read_bytes())
    data[offset : offset + len(value)] = value
    path.write_bytes(bytes(data))


def test_corrupt_packages_raise_scorer_error(arpa_path, tmp_path):
    good = write_package(tmp_path / "good.npscorer", arpa_path, alpha=1.0, beta=1.0)
    cases = {
        "version": (8, struct.pack("<I", 2), "format version 2"),
        "length": (24, struct.pack("<Q", 10**9), "truncated"),
        "json": (32, b"}", "corrupt metadata"),
    }
    for name, (offset, value, message) in cases.items():
        bad = tmp_path / f"{name}.npscorer"
        shutil.copyfile(good, bad)
        _corrupt(bad, offset, value)
        with pytest.raises(ScorerError, match=message) as caught:
            open_scorer(bad)
        assert bad.name in str(caught.value)
    truncated = tmp_path / "short.npscorer"
    truncated.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(ScorerError, match="truncated"):
        open_scorer(truncated)
    header_only = tmp_path / "header.npscorer"
    header_only.write_bytes(good.read_bytes()[:20])
    with pytest.raises(ScorerError, match="truncated npspeech scorer header"):
        open_scorer(header_only)
    tampered = tmp_path / "tampered.npscorer"
    data = bytearray(good.read_bytes())
    data[-20] ^= 0x01  # flip a bit of the LM
    tampered.write_bytes(bytes(data))
    with pytest.raises(ScorerError, match="SHA-256"):
        open_scorer(tampered)


def test_unrecognised_and_missing_files(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello world\n")
    with pytest.raises(ScorerError, match="notes.txt: not a language model"):
        open_scorer(text)
    with pytest.raises(
        ScorerError, match="absent.scorer: language model file not found"
    ):
        open_scorer(tmp_path / "absent.scorer")
    with pytest.raises(ScorerError, match="is a directory"):
        open_scorer(tmp_path)
    broken = tmp_path / "broken.arpa"
    broken.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1.0\ta\n\\end\\\n")
    with pytest.raises(ScorerError, match="announces 3 1-grams"):
        open_scorer(broken)


def test_describe_lists_what_info_prints(arpa_path):
    summary = describe(open_scorer(arpa_path))
    assert summary["kind"] == "arpa" and summary["order"] == 3
    assert summary["vocabulary_size"] == len(open_scorer(arpa_path).vocabulary)


def test_decoder_scorer_loads_every_kind(arpa_path, tmp_path):
    scorer_module = pytest.importorskip("npspeech.decoder.scorer")
    package = write_package(tmp_path / "p.npscorer", arpa_path, alpha=0.3, beta=0.4)
    loaded = scorer_module.Scorer.from_file(package)
    assert (loaded.alpha, loaded.beta) == (0.3, 0.4)
    assert loaded.vocabulary == open_scorer(arpa_path).vocabulary

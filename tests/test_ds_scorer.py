"""DeepSpeech .scorer reader: the real smoke-test scorer, its lexicon, corruptions."""

from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest

from npspeech.alphabet import Alphabet
from npspeech.decoder.ds_scorer import (
    SCORER_VERSION,
    TRIE_MAGIC,
    LexiconFst,
    kenlm_end_of_search,
    lexicon_label_sequences,
    lexicon_words,
    read_deepspeech_scorer,
    read_kenlm_header,
    read_kenlm_vocabulary,
    write_deepspeech_scorer,
)
from npspeech.errors import ScorerError

# Facts of data/smoke_test/pruned_lm.scorer (DeepSpeech commit 6913ae8), read with xxd:
# the KenLM model ends and the 'TRIE' header starts at byte 266,112 of 439,040.
SCORER_SIZE = 439_040
TRIE_OFFSET = 266_112


@pytest.fixture(scope="module")
def scorer_path(data_dir):
    return data_dir / "deepspeech_smoke" / "lm" / "pruned_lm.scorer"


@pytest.fixture(scope="module")
def scorer(scorer_path):
    return read_deepspeech_scorer(scorer_path)


def _copy(scorer_path, tmp_path):
    target = tmp_path / "copy.scorer"
    shutil.copyfile(scorer_path, target)
    return target


@pytest.mark.data
def test_real_scorer_header_and_parameters(scorer, scorer_path):
    assert scorer_path.stat().st_size == SCORER_SIZE
    assert scorer.kenlm.order == 4
    assert scorer.kenlm.model_name == "quant_array_trie"
    assert scorer.kenlm.counts == (3543, 13119, 17076, 17231)
    assert not scorer.kenlm.has_vocabulary
    assert scorer.trie_offset == TRIE_OFFSET
    assert scorer.alpha == 0.75
    assert scorer.beta == pytest.approx(1.85, abs=1e-7)  # stored from a float32 1.85
    assert scorer.is_utf8 is False


@pytest.mark.data
def test_real_scorer_vocabulary_is_the_pruned_word_list(scorer, data_dir):
    listed = (data_dir / "deepspeech_smoke" / "lm" / "vocab.pruned.txt").read_text()
    words = {line.strip() for line in listed.splitlines() if line.strip()}
    assert len(words) == 3540
    assert len(scorer.vocabulary) == 3540
    assert set(scorer.vocabulary) == words
    assert list(scorer.vocabulary) == sorted(scorer.vocabulary)
    # The lexicon is minimised: fewer states than the words' letters.
    assert scorer.lexicon.n_states == 3451
    assert scorer.lexicon.n_arcs == 6488
    # Every word path ends with the space label (class 0 + 1 = 1).
    sequences = list(lexicon_label_sequences(scorer.lexicon))
    assert len(sequences) == 3540
    assert all(sequence[-1] == 1 for sequence in sequences)


@pytest.mark.data
def test_kenlm_reads_the_scorer_and_the_bare_model(scorer_path, tmp_path):
    kenlm = pytest.importorskip("kenlm")
    whole = kenlm.Model(str(scorer_path))
    bare = tmp_path / "bare.klm"
    bare.write_bytes(scorer_path.read_bytes()[:TRIE_OFFSET])
    with open(bare, "rb") as handle:
        header = read_kenlm_header(handle, bare)
        assert kenlm_end_of_search(handle, header, bare) == TRIE_OFFSET
    alone = kenlm.Model(str(bare))
    sentence = "she had your dark suit in greasy wash water all year"
    assert alone.score(sentence) == whole.score(sentence)
    with pytest.raises(ScorerError, match="plain KenLM binary"):
        read_deepspeech_scorer(bare)


@pytest.mark.data
def test_other_alphabet_spells_the_lexicon_with_its_labels(scorer_path):
    # Same classes, other symbols: class i is spelled by label i of the given alphabet.
    shifted = Alphabet(["_"] + [chr(c) for c in range(ord("A"), ord("Z") + 1)] + ["'"])
    read = read_deepspeech_scorer(scorer_path, alphabet=shifted)
    # This alphabet has no space label, so the terminator (class 0) is spelled "_".
    assert len(read.vocabulary) == 3540
    assert "SHE_" in read.vocabulary and "YEAR_" in read.vocabulary
    assert all(word.endswith("_") for word in read.vocabulary)
    too_small = Alphabet([" ", "a", "b"])
    with pytest.raises(ScorerError, match="outside the 3-label alphabet"):
        read_deepspeech_scorer(scorer_path, alphabet=too_small)


@pytest.mark.data
def test_write_copy_with_new_alpha_beta(scorer_path, tmp_path):
    target = tmp_path / "tuned.scorer"
    write_deepspeech_scorer(scorer_path, target, alpha=1.25, beta=-0.5)
    tuned = read_deepspeech_scorer(target)
    assert (tuned.alpha, tuned.beta) == (1.25, -0.5)
    original, rewritten = scorer_path.read_bytes(), target.read_bytes()
    assert len(original) == len(rewritten)
    changed = np.flatnonzero(
        np.frombuffer(original, np.uint8) != np.frombuffer(rewritten, np.uint8)
    )
    assert changed.min() >= TRIE_OFFSET + 9 and changed.max() < TRIE_OFFSET + 25
    # In place: the file is replaced atomically, nothing else is left in the folder.
    copy = _copy(scorer_path, tmp_path)
    write_deepspeech_scorer(copy, copy, alpha=2.0, beta=3.0)
    assert read_deepspeech_scorer(copy).alpha == 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.scorer", "tuned.scorer"]


@pytest.mark.data
@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (TRIE_OFFSET, struct.pack("<i", 0x12345678), "wrong scorer magic"),
        (TRIE_OFFSET + 4, struct.pack("<i", SCORER_VERSION + 1), "version 7"),
        (TRIE_OFFSET + 8, b"\x05", "is_utf8"),
        (TRIE_OFFSET + 25, struct.pack("<I", 0xDEADBEEF), "wrong OpenFST magic"),
        (
            0,
            b"mmap lm http://kheafield.com/code format version 4\n",
            "unsupported format",
        ),
        (56, struct.pack("<f", 2.0), "sanity"),
        (0, b"garbage!", "not a KenLM binary"),
    ],
)
def test_corrupted_copies_raise_scorer_error(
    scorer_path, tmp_path, offset, value, message
):
    data = bytearray(scorer_path.read_bytes())
    data[offset : offset + len(value)] = value
    path = tmp_path / "bad.scorer"
    path.write_bytes(bytes(data))
    with pytest.raises(ScorerError, match=message) as caught:
        read_deepspeech_scorer(path)
    assert "bad.scorer" in str(caught.value)


@pytest.mark.data
@pytest.mark.parametrize(
    "size", [100, 40_000, TRIE_OFFSET + 12, TRIE_OFFSET + 200, 400_000]
)
def test_truncated_copies_raise_scorer_error(scorer_path, tmp_path, size):
    path = tmp_path / "short.scorer"
    path.write_bytes(scorer_path.read_bytes()[:size])
    with pytest.raises(ScorerError, match="truncated|cut short") as caught:
        read_deepspeech_scorer(path)
    assert "short.scorer" in str(caught.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ScorerError, match="nothing.scorer: scorer file not found"):
        read_deepspeech_scorer(tmp_path / "nothing.scorer")


def _lexicon(arcs, final, start=0):
    """A LexiconFst from (state, label, next) triples grouped by state."""
    n_states = len(final)
    arcs = sorted(arcs)
    begin = np.zeros(n_states, np.int64)
    count = np.zeros(n_states, np.int64)
    for index, (state, _, _) in enumerate(arcs):
        if count[state] == 0:
            begin[state] = index
        count[state] += 1
    return LexiconFst(
        start=start,
        final=np.asarray(final, bool),
        arc_begin=begin,
        arc_count=count,
        ilabels=np.asarray([a[1] for a in arcs], np.int32),
        next_states=np.asarray([a[2] for a in arcs], np.int32),
    )


def test_utf8_lexicon_words_are_bytes_plus_one():
    # "né" = 6e c3 a9 and "no" = 6e 6f share the first byte; labels are bytes + 1.
    lexicon = _lexicon(
        [(0, 0x6E + 1, 1), (1, 0xC3 + 1, 2), (2, 0xA9 + 1, 3), (1, 0x6F + 1, 3)],
        final=[False, False, False, True],
    )
    assert lexicon_words(lexicon, is_utf8=True) == ("no", "né")
    broken = _lexicon([(0, 0xC3 + 1, 1)], final=[False, True])
    with pytest.raises(ScorerError, match="not UTF-8"):
        lexicon_words(broken, is_utf8=True)


def test_lexicon_with_a_cycle_is_rejected():
    cyclic = _lexicon([(0, 2, 1), (1, 3, 0), (1, 1, 2)], final=[False, False, True])
    with pytest.raises(ScorerError, match="cycle"):
        list(lexicon_label_sequences(cyclic))


def test_trie_magic_is_the_multicharacter_constant():
    assert struct.pack("<i", TRIE_MAGIC) == b"EIRT"  # 'TRIE' stored little-endian


@pytest.mark.data
def test_non_trie_models_are_searched_by_signature(scorer_path, tmp_path):
    # Relabel the model as a hash-table ("probing", type 0) one: its end is then not
    # computed, and the reader must find the header by its 29-byte signature.
    data = bytearray(scorer_path.read_bytes())
    data[96:100] = struct.pack("<i", 0)
    relabelled = tmp_path / "probing.scorer"
    relabelled.write_bytes(bytes(data))
    read = read_deepspeech_scorer(relabelled)
    assert read.kenlm.model_name == "probing"
    assert read.trie_offset == TRIE_OFFSET
    assert len(read.vocabulary) == 3540
    bare = tmp_path / "probing.klm"
    bare.write_bytes(bytes(data[:TRIE_OFFSET]))
    from npspeech.lm.package import open_scorer

    assert open_scorer(bare).kind == "kenlm_binary"


@pytest.mark.data
def test_word_strings_after_a_trie_model_are_its_vocabulary(scorer_path, tmp_path):
    from npspeech.lm.package import open_scorer

    # A model built with its vocabulary stores NUL-terminated words at its end.
    data = bytearray(scorer_path.read_bytes()[:TRIE_OFFSET])
    data[100] = 1  # has_vocabulary
    path = tmp_path / "with_words.klm"
    path.write_bytes(bytes(data) + "<unk>\0<s>\0</s>\0été\0a\0".encode())
    opened = open_scorer(path)
    assert (opened.kind, opened.vocabulary) == ("kenlm_binary", ("a", "été"))
    with open(path, "rb") as handle:
        assert read_kenlm_vocabulary(handle, read_kenlm_header(handle, path)) == (
            "a",
            "été",
        )

from pathlib import Path

import numpy as np
import pytest

from npspeech.alphabet import Alphabet, english
from npspeech.errors import AlphabetError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "alphabet.txt"
    path.write_bytes(text.encode("utf-8"))
    return path


def test_deepspeech_format_comments_escapes_and_space(tmp_path):
    path = write(tmp_path, "# comment\n \na\n\\#\n\nb\r\n")
    alphabet = Alphabet.from_file(path)
    assert alphabet.labels == (" ", "a", "#", "b")
    assert alphabet.blank == 4 and alphabet.n_classes == 5 and alphabet.space == 0


def test_real_deepspeech_alphabet_is_english(data_dir):
    alphabet = Alphabet.from_file(data_dir / "deepspeech_smoke" / "alphabet.txt")
    assert alphabet == english()
    assert alphabet.size == 28 and alphabet.blank == 28


def test_round_trip_through_file(tmp_path):
    alphabet = Alphabet([" ", "#", "x", "é"])
    alphabet.to_file(tmp_path / "out.txt")
    assert Alphabet.from_file(tmp_path / "out.txt") == alphabet


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no labels"),
        ("# only\n", "no labels"),
        ("a\nb\na\n", r"alphabet.txt:3: .*line 1"),
    ],
)
def test_bad_files_name_the_problem(tmp_path, text, message):
    with pytest.raises(AlphabetError, match=message):
        Alphabet.from_file(write(tmp_path, text))


def test_missing_directory_and_non_utf8(tmp_path):
    with pytest.raises(AlphabetError, match="not found"):
        Alphabet.from_file(tmp_path / "nope.txt")
    with pytest.raises(AlphabetError, match="directory"):
        Alphabet.from_file(tmp_path)
    (tmp_path / "latin1.txt").write_bytes(b"a\n\xe9\n")
    with pytest.raises(AlphabetError, match="UTF-8"):
        Alphabet.from_file(tmp_path / "latin1.txt")


def test_encode_decode_round_trip():
    alphabet = english()
    ids = alphabet.encode("she's here")
    assert ids.dtype == np.int32
    assert ids.tolist() == [19, 8, 5, 27, 19, 0, 8, 5, 18, 5]
    assert alphabet.decode(ids) == "she's here"


def test_encode_names_the_bad_character():
    with pytest.raises(AlphabetError, match=r"'X' \(U\+0058\) at position 2"):
        english().encode("abX")
    assert english().unknown_characters("a1b!") == [(1, "1"), (3, "!")]


def test_decode_rejects_blank_and_out_of_range():
    with pytest.raises(AlphabetError, match="outside"):
        english().decode([0, 28])


def test_multi_character_labels_encode_longest_first():
    alphabet = Alphabet(["a", "ab", "b"])
    assert alphabet.encode("abab").tolist() == [1, 1]
    assert alphabet.encode("ba").tolist() == [2, 0]


def test_normalize_folds_text_into_the_alphabet():
    alphabet = english()
    assert alphabet.normalize("  Café—Crème, it’s  OK!  ") == "cafe creme it's ok"
    assert alphabet.normalize("well-known/used") == "well known used"


def test_from_transcripts_puts_space_first():
    alphabet = Alphabet.from_transcripts(["ba c", "ab"])
    assert alphabet.labels == (" ", "a", "b", "c")
    with pytest.raises(AlphabetError):
        Alphabet.from_transcripts(["", ""])


def test_duplicate_and_empty_labels_rejected():
    with pytest.raises(AlphabetError, match="twice"):
        Alphabet(["a", "a"])
    with pytest.raises(AlphabetError, match="empty"):
        Alphabet(["a", ""])

import os

import pytest

from npspeech.errors import OutputError
from npspeech.fileio import write_atomically, write_text_atomically


def test_writes_and_replaces(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    write_text_atomically(target, "one")
    write_text_atomically(target, "two")
    assert target.read_text() == "two"
    assert os.listdir(target.parent) == ["out.txt"]  # no temporary left behind


def test_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"precious")

    def broken(handle):
        handle.write(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_atomically(target, broken)
    assert target.read_bytes() == b"precious"
    assert os.listdir(tmp_path) == ["model.bin"]


def test_handle_can_seek_and_read_its_own_target(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"abcdef")

    def patch(handle):
        handle.write(target.read_bytes())
        handle.seek(2)
        handle.write(b"XY")

    write_atomically(target, patch)
    assert target.read_bytes() == b"abXYef"


def test_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OutputError, match="cannot write"):
        write_text_atomically(blocker / "out.txt", "x")


def test_new_files_get_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        target = write_text_atomically(tmp_path / "new.txt", "x")
        assert target.stat().st_mode & 0o777 == 0o644
        target.chmod(0o600)
        write_text_atomically(target, "y")  # a replaced file keeps its mode
        assert target.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(umask)

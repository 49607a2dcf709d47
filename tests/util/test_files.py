"""Tests for codec.util.files.atomic_write: the one way the package writes a file or folder whole."""

import pytest

from codec.util.files import atomic_write


def leftovers(folder):
    return sorted(f.name for f in folder.iterdir() if f.name.startswith("."))


def test_a_file_is_written_or_replaced_whole(tmp_path):
    target = tmp_path / "x.bin"
    assert atomic_write(target, lambda tmp: tmp.write_bytes(b"one")) == target
    atomic_write(str(target), lambda tmp: tmp.write_bytes(b"two"))
    assert target.read_bytes() == b"two" and leftovers(tmp_path) == []


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")

    def fail(tmp):
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_without_replace_an_existing_name_is_refused(tmp_path):
    target = tmp_path / "x.bin"
    atomic_write(target, lambda tmp: tmp.write_bytes(b"first"), replace=False)
    with pytest.raises(FileExistsError):
        atomic_write(target, lambda tmp: tmp.write_bytes(b"second"), replace=False)
    assert target.read_bytes() == b"first" and leftovers(tmp_path) == []


def test_a_folder_replaces_the_old_one_as_a_whole(tmp_path):
    target = tmp_path / "run" / "checkpoint"

    def folder(files):
        def write(tmp):
            tmp.mkdir(parents=True)
            for name, text in files.items():
                (tmp / name).write_text(text)

        return write

    atomic_write(target, folder({"a": "1", "b": "1"}))
    atomic_write(target, folder({"a": "2"}))
    assert {f.name: f.read_text() for f in target.iterdir()} == {"a": "2"}
    assert leftovers(target.parent) == []

"""The one atomic write: whole or nothing, and no temporary file shared between writers or left behind."""

import os

import pytest

from igcnas.files import atomic_write, atomic_write_text


def test_the_file_is_whole_or_untouched_and_nothing_is_left_behind(tmp_path):
    target = tmp_path / "deep" / "out.json"
    atomic_write_text(target, "first")
    assert target.read_text() == "first"

    def fails(temporary):
        temporary.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, fails)
    assert target.read_text() == "first"  # the old content, whole
    assert os.listdir(target.parent) == ["out.json"]  # no temporary file left


def test_each_write_has_a_temporary_name_of_its_own(tmp_path):
    names = []
    for _ in range(2):
        atomic_write(tmp_path / "x", lambda temporary: (names.append(temporary.name), temporary.write_text("y")))
    assert len(set(names)) == 2 and all(str(os.getpid()) in n for n in names)

"""``replace_file``: the file is the old one or the whole new one, never half of it."""
from __future__ import annotations

import os
import threading

import pytest

from pascal_ref.io.files import replace_file


def test_text_and_bytes_are_written(tmp_path):
    replace_file(tmp_path / "a.txt", "words\n")
    replace_file(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "a.txt").read_text() == "words\n" and (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "manifest.json"
    target.write_text("old")
    with pytest.raises(TypeError):
        replace_file(target, object())          # cannot be written: fails after the temporary was opened
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_a_symbolic_link_is_replaced_not_written_through(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    link = tmp_path / "folder.v"
    link.symlink_to(outside)
    replace_file(link, "module m; endmodule\n")
    assert outside.read_text() == "keep" and not link.is_symlink() and link.read_text().startswith("module")


def test_concurrent_writers_of_the_same_content_never_show_a_partial_file(tmp_path):
    target = tmp_path / "weights.hex"
    text = "".join(f"{i:08x}\n" for i in range(20000))
    replace_file(target, text)
    seen, stop = set(), threading.Event()

    def write():
        for _ in range(20):
            replace_file(target, text)

    def read():
        while not stop.is_set():
            seen.add(len(target.read_text()))

    writers = [threading.Thread(target=write) for _ in range(3)]
    reader = threading.Thread(target=read)
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    reader.join()
    assert seen == {len(text)} and [p.name for p in tmp_path.iterdir()] == ["weights.hex"]
    assert os.path.getsize(target) == len(text)

"""exporter.atomicfile: whole-file replacement, whole-record appends, torn lines set aside."""
import errno
import os
import stat

import pytest

from exporter import atomicfile
from tests.fulldisk import PAGE, disk  # noqa: F401  (the fixture)


def test_write_bytes_replaces_keeping_permissions(tmp_path):
    path = str(tmp_path / "report.txt")
    with open(path, "w") as f:
        f.write("old")
    os.chmod(path, 0o640)
    atomicfile.write_bytes(path, b"new")
    assert open(path).read() == "new"
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert os.listdir(str(tmp_path)) == ["report.txt"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path):
    path = str(tmp_path / "checkpoint.pt")
    with open(path, "wb") as f:
        f.write(b"old")

    def write(f):
        f.write(b"half")
        raise RuntimeError("serializer failed")
    with pytest.raises(RuntimeError):
        atomicfile.write_with(path, write)
    assert open(path, "rb").read() == b"old"
    assert os.listdir(str(tmp_path)) == ["checkpoint.pt"]


def test_append_sets_a_torn_last_line_aside(tmp_path):
    path = str(tmp_path / "r.jsonl")
    with open(path, "w") as f:
        f.write('{"a": 1}\n{"b": 2')
    note = atomicfile.append_lines(path, ['{"c": 3}'])
    assert open(path).read() == '{"a": 1}\n{"c": 3}\n'
    assert open(path + ".torn").read() == '{"b": 2\n'
    assert note is not None and path in note and "torn" in note and path + ".torn" in note
    assert atomicfile.append_lines(path, []) is None


def test_a_torn_file_without_any_newline_is_moved_whole(tmp_path):
    path = str(tmp_path / "r.jsonl")
    with open(path, "w") as f:
        f.write("x" * 100000)
    atomicfile.append_lines(path, ["y"])
    assert open(path).read() == "y\n"
    assert open(path + ".torn").read() == "x" * 100000 + "\n"


def test_read_lines_leaves_out_a_torn_last_line(tmp_path):
    path = str(tmp_path / "state.jsonl")
    with open(path, "w") as f:
        f.write("one\ntwo\nthr")
    lines, note = atomicfile.read_lines(path)
    assert lines == ["one", "two"]
    assert note is not None and "3 bytes" in note and path in note
    with open(path, "a") as f:
        f.write("ee\n")
    assert atomicfile.read_lines(path) == (["one", "two", "three"], None)


def test_cannot_write_is_one_line():
    error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/x")
    assert atomicfile.cannot_write("results", "/x", error, "pick another --results") == \
        "cannot write results /x: No space left on device; free space or pick another --results"


def test_full_disk_replace_keeps_the_old_file(disk):
    path = disk.path("report.json")
    with open(path, "w") as f:
        f.write('{"old": true}\n')
    disk.fill()
    with pytest.raises(OSError) as caught:
        atomicfile.write_bytes(path, b"{" * 3 * PAGE)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == path
    assert open(path).read() == '{"old": true}\n'
    assert sorted(os.listdir(disk.root)) == ["filler", "report.json"]


def test_full_disk_short_append_is_truncated_back(disk):
    path = disk.path("r.jsonl")
    old = ("x" * 99 + "\n") * 40  # 4000 bytes: the record's first 96 bytes still fit the file's last page
    with open(path, "w") as f:
        f.write(old)
    disk.fill()
    with pytest.raises(OSError) as caught:
        atomicfile.append_lines(path, ["y" * 500])
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == path
    assert open(path).read() == old


def test_appends_to_a_pipe_are_plain_writes():
    """--results /dev/stdout: a pipe has no size to cut back to and nothing to fsync."""
    read, write = os.pipe()
    try:
        assert atomicfile.append_lines("/proc/self/fd/{}".format(write), ['{"epoch": 0}', "x"]) is None
        assert os.read(read, 100) == b'{"epoch": 0}\nx\n'
    finally:
        os.close(read)
        os.close(write)


def test_a_symlinked_file_is_replaced_behind_its_link(tmp_path):
    (tmp_path / "www").mkdir()
    target = tmp_path / "www" / "report.html"
    target.write_text("old")
    link = tmp_path / "report.html"
    link.symlink_to(target)
    atomicfile.write_bytes(str(link), b"new")
    assert link.is_symlink() and target.read_text() == "new"
    assert os.listdir(str(tmp_path / "www")) == ["report.html"]


def test_a_pipe_is_written_as_it_is(tmp_path):
    """``--output /dev/stdout``: no temporary file beside it, no rename over it."""
    fifo = str(tmp_path / "out")
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        atomicfile.write_bytes(fifo, b"the report")
        assert os.read(reader, 100) == b"the report"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and os.listdir(str(tmp_path)) == ["out"]

"""exporter.atomicfile: whole-file replacement, whole-record appends, torn lines set aside."""
import errno
import os
import re
import signal
import stat
import subprocess
import sys

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
    assert re.match(r"^cannot write results /x: No space left on device \(\d+\.\d MB free there\); free space or "
                    r"pick another --results$", atomicfile.cannot_write("results", "/x", error, "pick another --results"))


def test_a_parent_that_is_a_file_is_named_not_file_exists(tmp_path):
    """``--results /etc/hostname/r.jsonl``: makedirs says "File exists"; the cause is that the parent is a file."""
    (tmp_path / "hostname").write_text("board")
    path = str(tmp_path / "hostname" / "out" / "r.jsonl")
    with pytest.raises(OSError) as caught:
        os.makedirs(os.path.dirname(path))
    assert atomicfile.cannot_write("results", path, caught.value, "pick another --results") == \
        "cannot write results {}: {} is not a folder; pick another --results".format(path, tmp_path / "hostname")


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


def test_appends_to_a_fifo_without_a_reader_are_refused_not_lost(tmp_path):
    """--results on a FIFO nobody reads: the records would sit in the pipe and vanish at exit (exit 0, nothing
    written). Records go to regular files only, refused at once without waiting for a reader."""
    fifo = str(tmp_path / "results.jsonl")
    os.mkfifo(fifo)
    with pytest.raises(OSError) as caught:
        atomicfile.append_lines(fifo, ['{"epoch": 0}'])
    assert caught.value.errno == errno.EINVAL and caught.value.filename == fifo
    assert "not a regular file" in atomicfile.cannot_write("results", fifo, caught.value, "pick another --results")


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


def test_files_written_together_replace_none_when_one_fails(disk):
    """A timeline's PNG and trace: the second failing on a full disk leaves both old files, never a new picture
    beside an old trace; no temporary file stays."""
    png, trace = disk.path("run.png"), disk.path("run.trace.json")
    for path in (png, trace, disk.path("spare")):
        with open(path, "w") as f:
            f.write("old")
    disk.fill()
    os.unlink(disk.path("spare"))  # one page free: the picture's temporary file fits, the trace's does not
    with pytest.raises(OSError) as caught:
        atomicfile.write_together([(png, lambda f: f.write(b"p")), (trace, lambda f: f.write(b"t" * 3 * PAGE))])
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == trace
    assert open(png).read() == open(trace).read() == "old"
    assert sorted(os.listdir(disk.root)) == ["filler", "run.png", "run.trace.json"]


def test_a_writer_error_caused_by_the_disk_is_reported_as_the_disk(disk):
    """torch.save turns a full disk into "enforce fail at inline_container.cc": the OSError under it is raised."""
    path = disk.path("checkpoint.pt")
    disk.fill()

    def serializer(f):
        try:
            f.write(b"x" * 3 * PAGE)
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos")
    with pytest.raises(OSError) as caught:
        atomicfile.write_with(path, serializer)
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == path
    message = atomicfile.cannot_write("checkpoint", path, caught.value, "pick another --checkpoint-dir")
    assert re.search(r"No space left on device \(0\.0 MB free there\); free space or pick", message), message


WRITER = """
import sys, time
from exporter import atomicfile
def write(f):
    f.write(b"half a checkpoint")
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
atomicfile.write_with(sys.argv[1], write)
"""


def test_a_killed_writers_temporary_file_goes_at_the_next_write(tmp_path):
    """SIGKILL while a file is written leaves its temporary file; the next write of that file removes it, and
    never one a live writer still holds."""
    path = str(tmp_path / "checkpoint.pt")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, path], cwd=repo, stdout=subprocess.PIPE)
               for _ in range(2)]
    try:
        for writer in writers:
            assert writer.stdout.readline() == b"writing\n"
        writers[0].send_signal(signal.SIGKILL)
        writers[0].wait()
        assert len(os.listdir(str(tmp_path))) == 2
        atomicfile.write_bytes(path, b"new")
        left = sorted(os.listdir(str(tmp_path)))
        assert len(left) == 2 and left[1] == "checkpoint.pt" and re.match(r"^\.checkpoint\.pt\.[0-9a-f]{8}\.tmp$", left[0])
    finally:
        for writer in writers:
            writer.kill()
            writer.wait()
    assert atomicfile.remove_stale(path) == [os.path.join(str(tmp_path), left[0])]
    assert os.listdir(str(tmp_path)) == ["checkpoint.pt"] and open(path, "rb").read() == b"new"

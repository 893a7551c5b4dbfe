"""bench/slowdisk.py, mounted for real (root, /dev/fuse, libfuse2): every read takes its size over the rate,
however long the disk idled before it, and readers queue behind each other, as on one card. blk-throttle,
which the bench used before, fails the first check: a reader pausing between files was not held back at all."""
import contextlib
import errno
import os
import threading
import time

import pytest

from bench import slowdisk

RATE = 2e6  # bytes/s
FILE = 50000  # bytes: 25 ms each at RATE

pytestmark = pytest.mark.skipif(slowdisk.unavailable() is not None, reason=str(slowdisk.unavailable()))


@pytest.fixture
def disk(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    for i in range(6):
        (root / "{:02d}".format(i)).write_bytes(os.urandom(FILE))
    with slowdisk.mounted(str(root), str(tmp_path / "slow"), RATE) as mountpoint:
        yield mountpoint
    assert not os.path.ismount(str(tmp_path / "slow"))  # unmounted at exit


def read(path: str) -> float:
    """Seconds to read the file, from the disk: the file's cached pages dropped first."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        started = time.monotonic()
        while os.read(fd, 1 << 20):
            pass
        return time.monotonic() - started
    finally:
        os.close(fd)


def test_every_read_takes_its_size_over_the_rate_however_long_the_disk_idled(disk):
    for name in sorted(os.listdir(disk)):
        assert read(os.path.join(disk, name)) >= 0.9 * FILE / RATE, name
        time.sleep(0.15)  # idle: a throttle would let the next file through at once


def test_readers_queue_behind_each_other(disk):
    names = sorted(os.listdir(disk))
    started = time.monotonic()
    readers = [threading.Thread(target=lambda part=part: [read(os.path.join(disk, n)) for n in part])
               for part in (names[:3], names[3:])]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert time.monotonic() - started >= 0.9 * len(names) * FILE / RATE  # one card: no faster with two readers


def test_the_view_is_read_only_and_whole(disk):
    with pytest.raises(OSError) as refused:
        open(os.path.join(disk, "00"), "ab").close()
    assert refused.value.errno == errno.EROFS
    assert sorted(os.listdir(disk)) == ["{:02d}".format(i) for i in range(6)]
    with open(os.path.join(disk, "03"), "rb") as f:
        assert len(f.read()) == FILE


def test_a_reader_still_open_at_exit_leaves_no_mount_behind(tmp_path):
    """An interrupted bench: the trainer killed, its worker still holding a file on the disk."""
    root = tmp_path / "data"
    root.mkdir()
    (root / "a").write_bytes(b"x" * 10)
    mountpoint = str(tmp_path / "slow")
    with slowdisk.mounted(str(root), mountpoint, RATE, timeout_s=3.0) as disk:
        held = os.open(os.path.join(disk, "a"), os.O_RDONLY)
    try:
        assert not os.path.ismount(mountpoint)
    finally:
        with contextlib.suppress(OSError):  # ENOTCONN: the daemon was stopped under the open file
            os.close(held)

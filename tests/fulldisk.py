"""A real full disk for tests: a small tmpfs mounted as root, filled to the last page.

Tests that use it skip where the user is not root or the kernel refuses the mount (a container without
CAP_SYS_ADMIN)."""
import contextlib
import errno
import os
import subprocess
import tempfile
from typing import Iterator

import pytest

PAGE = 4096  # tmpfs allocates whole pages: an append that fits the last page of a file still succeeds


class FullDisk:
    def __init__(self, root: str) -> None:
        self.root = root

    def path(self, *names: str) -> str:
        return os.path.join(self.root, *names)

    def fill(self) -> None:
        """Takes every free page, so that a new file or an append past its last page gets ENOSPC."""
        with open(self.path("filler"), "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * PAGE)
            except OSError as error:
                assert error.errno == errno.ENOSPC, error


@contextlib.contextmanager
def full_disk(size_kib: int = 256) -> Iterator[FullDisk]:
    """A fresh tmpfs of ``size_kib``; fill() it once the files the test needs are in place."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs (a real full disk) needs root")
    root = tempfile.mkdtemp(prefix="edgescope-full-")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size={}k".format(size_kib), "tmpfs", root],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if mounted.returncode != 0:
        os.rmdir(root)
        pytest.skip("cannot mount a tmpfs: " + mounted.stdout.strip())
    try:
        yield FullDisk(root)
    finally:
        subprocess.run(["umount", root], check=True)
        os.rmdir(root)


@pytest.fixture
def disk() -> Iterator[FullDisk]:
    with full_disk() as fs:
        yield fs

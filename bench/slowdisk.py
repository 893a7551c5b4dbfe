"""A slow disk for benchmarks: a read-only FUSE view of a folder that serves reads as a slow card does, one
request at a time, each taking ``size / rate`` however long the disk was idle before it. blk-throttle
(bench/blkio.py) is not that: it holds back only reads beyond its average rate, so a reader that pauses between
files is not slowed at all. Needs root, /dev/fuse, libfuse2 and fusepy (scripts/install-deps.sh).

    python3 -m bench.slowdisk ROOT MOUNTPOINT BYTES_PER_S    # serves until unmounted
"""
import contextlib
import errno
import os
import subprocess
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, Optional

ATTRIBUTES = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid")


def unavailable() -> Optional[str]:
    """Why a slow disk cannot be had here (None: it can)."""
    if os.geteuid() != 0:
        return "needs root (mount)"
    if not os.path.exists("/dev/fuse"):
        return "needs /dev/fuse"
    try:
        import fuse  # noqa: F401  (fusepy: loads libfuse2 at import)
    except (ImportError, OSError) as e:
        return "needs fusepy and libfuse2 (scripts/install-deps.sh): {}".format(e)
    return None


def operations(root: str, bps: float) -> Any:
    """fusepy operations passing ``root`` through read-only, each read served after ``size / bps`` seconds
    measured from when the disk took it up (reads queue behind each other, as on one card)."""
    from fuse import FuseOSError, Operations

    class SlowReads(Operations):  # type: ignore[misc]
        def __init__(self) -> None:
            self.busy = threading.Lock()

        def _path(self, path: str) -> str:
            return os.path.join(root, path.lstrip("/"))

        def getattr(self, path: str, fh: Optional[int] = None) -> Dict[str, Any]:
            try:
                st = os.lstat(self._path(path))
            except OSError as e:
                raise FuseOSError(e.errno)
            return {name: getattr(st, name) for name in ATTRIBUTES}

        def readdir(self, path: str, fh: int) -> List[str]:
            return [".", ".."] + os.listdir(self._path(path))

        def open(self, path: str, flags: int) -> int:
            if flags & (os.O_WRONLY | os.O_RDWR):
                raise FuseOSError(errno.EROFS)
            return os.open(self._path(path), os.O_RDONLY)

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            with self.busy:
                started = time.monotonic()
                data = os.pread(fh, size, offset)
                time.sleep(max(0.0, started + len(data) / bps - time.monotonic()))
            return data

        def release(self, path: str, fh: int) -> int:
            os.close(fh)
            return 0

    return SlowReads()


@contextlib.contextmanager
def mounted(root: str, mountpoint: str, bps: float, timeout_s: float = 10.0) -> Iterator[str]:
    """``root`` served at ``mountpoint`` at ``bps`` bytes/s while the context lasts; unmounted at exit."""
    os.makedirs(mountpoint, exist_ok=True)
    server = subprocess.Popen([sys.executable, "-m", "bench.slowdisk", root, mountpoint, repr(float(bps))],
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        deadline = time.monotonic() + timeout_s
        while not os.path.ismount(mountpoint):
            if server.poll() is not None or time.monotonic() > deadline:
                raise OSError("the slow disk at {} did not mount (exit {})".format(mountpoint, server.poll()))
            time.sleep(0.05)
        yield mountpoint
    finally:
        # root's umount unmounts FUSE too (no fusermount needed); busy (a reader outlived its run: an interrupted
        # trainer's workers), the view is detached at once and goes when they close
        if os.path.ismount(mountpoint) and subprocess.run(["umount", mountpoint],
                                                          stderr=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["umount", "--lazy", mountpoint])
        try:
            server.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main(argv: List[str]) -> int:
    from fuse import FUSE
    root, mountpoint, bps = argv
    FUSE(operations(os.path.abspath(root), float(bps)), mountpoint, foreground=True, ro=True, nothreads=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Every file edgescope reads from outside (settings, recordings, timelines, /proc and /sys), read the one way
that cannot hang or fill the memory: opened without blocking (a FIFO with no writer would wait for ever),
regular files only (/dev/zero never ends; /proc and /sys files are regular), and never more than a bound."""
import os
import stat
from typing import BinaryIO, Optional


class Unreadable(ValueError):
    """A file that opens but must not be read: not a regular file, or larger than its bound."""


def open_regular(path: str, max_bytes: Optional[int] = None) -> BinaryIO:
    """``path`` open for reading, where it is a regular file of at most ``max_bytes`` (its size when opened; None:
    any size), for a reader that takes the file in parts (an unpickler, torch.load) rather than whole into one
    bytes object. OSError where it cannot be opened; Unreadable naming the bound it breaks."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    f = os.fdopen(fd, "rb")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Unreadable("not a regular file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise Unreadable("larger than {}".format(size(max_bytes)))
    except BaseException:
        f.close()
        raise
    return f


def read_regular(path: str, max_bytes: int) -> bytes:
    """The whole content of the regular file ``path``, at most ``max_bytes`` (also for /proc and /sys files, whose
    size says 0). OSError where it cannot be opened or read; Unreadable naming the bound it breaks."""
    with open_regular(path) as f:
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise Unreadable("larger than {}".format(size(max_bytes)))
    return raw


def size(count: int) -> str:
    """A bound in bytes as people write it: 64 MiB, 4 KiB."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift:
            return "{:g} {}".format(count / (1 << shift), unit)
    return "{} bytes".format(count)

"""Every file edgescope reads from outside (settings, recordings, timelines, /proc and /sys), read the one way
that cannot hang or fill the memory: opened without blocking (a FIFO with no writer would wait for ever),
regular files only (/dev/zero never ends; /proc and /sys files are regular), and never more than a bound."""
import os
import stat


class Unreadable(ValueError):
    """A file that opens but must not be read: not a regular file, or larger than its bound."""


def read_regular(path: str, max_bytes: int) -> bytes:
    """The whole content of the regular file ``path``, at most ``max_bytes``. OSError where it cannot be
    opened or read; Unreadable naming the bound it breaks."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unreadable("not a regular file")
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

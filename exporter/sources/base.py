"""The one interface every source implements.

A source's `sample()` returns the series it knows right now, or raises
`SourceDown` (or anything else) to say it cannot; the sampler turns that into
`edgescope_source_up{source} 0` plus `edgescope_source_down_info{source, reason}` and the other sources carry on.
"""
import errno
import os
from typing import Dict, List

from exporter.metrics import Sample
from exporter.readfile import Unreadable, read_regular

MAX_KERNEL_FILE_BYTES = 4 << 20  # /proc/diskstats of a host with 1,000 disks is ~150 KB


class SourceDown(Exception):
    """The source cannot give a sample now; the message is the short reason."""


class Source:
    """Base class: `name` is the `source` label of everything it reports."""

    name = "source"
    # wholes read beside the last sample that bound its parts (exporter.ranges.AT_MOST), not exposed themselves
    totals = {}  # type: Dict[str, float]

    def sample(self) -> List[Sample]:
        raise NotImplementedError

    def close(self) -> None:
        """Release processes, handles and threads. Safe to call twice."""


class Unavailable(Source):
    """A source that could not start: it reports down with the reason, every time."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    def sample(self) -> List[Sample]:
        raise SourceDown(self.reason)


def read_text(path: str) -> str:
    """A /proc or /sys file (below a root a user can point elsewhere): a link to /dev/zero or a FIFO there is
    an OSError, never a read without end."""
    try:
        return read_regular(path, MAX_KERNEL_FILE_BYTES).decode("utf-8", "replace").strip()
    except Unreadable as error:
        raise OSError(errno.EINVAL, str(error), path)


def read_number(path: str) -> float:
    return float(read_text(path))


def sysfs(root: str, *parts: str) -> str:
    """Join a path below a configurable root (/sys in production, a fake tree in tests)."""
    return os.path.join(root, *parts)

"""``edgescope-experiment --profile``: DS-Analyzer's differential passes. Each
run of the plan is trained twice, with its dataset evicted from the page cache
(cold: reads come from the disk) and then read into it (cached: the same run
without storage), so the report can show the "dataset cached" prediction of
the cold pass next to the cached pass's measurement. Neither needs root:
eviction is fdatasync + posix_fadvise(DONTNEED) on each file, warming reads each file."""
import dataclasses
import os
from typing import Dict, Iterator, List, Optional, Tuple

from experiment.plan import RunSpec

PASSES = ("cold", "cached")
CHUNK = 1 << 20


def expand(runs: List[RunSpec], profile: bool) -> List[Tuple[RunSpec, Optional[str]]]:
    """The runs to train: each run as is, or (profile) once per pass under ``<run_id>-<pass>``."""
    if not profile:
        return [(run, None) for run in runs]
    return [(dataclasses.replace(run, run_id="{}-{}".format(run.run_id, name)), name)
            for run in runs for name in PASSES]


def _files(data_dir: str) -> Iterator[str]:
    for folder, _, names in os.walk(data_dir):
        for name in sorted(names):
            path = os.path.join(folder, name)
            if os.path.isfile(path) and not os.path.islink(path):
                yield path


def evict(data_dir: str) -> int:
    """Drop the dataset's clean pages from the page cache; returns the files done."""
    count = 0
    for path in _files(data_dir):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)  # dirty pages (a freshly written dataset) cannot be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        count += 1
    return count


def warm(data_dir: str) -> int:
    """Read every file of the dataset once, so it sits in the page cache (if it fits in memory)."""
    count = 0
    for path in _files(data_dir):
        with open(path, "rb") as f:
            while f.read(CHUNK):
                pass
        count += 1
    return count


def prepare(name: str, data_dir: str) -> Dict[str, str]:
    """Set the page cache up for the pass; the labels that say so."""
    if name == "cold":
        evict(data_dir)
        return {"profile_pass": name, "page_cache": "evicted"}
    warm(data_dir)
    return {"profile_pass": name, "page_cache": "warmed"}

"""Why an epoch is slow: the bottleneck of a run (or comparison row) from the
trainer's stall decomposition, cross-checked against the exporter's disk
numbers. docs/reading-the-report.md ("Diagnosis, what-if and the Pareto front") lists the thresholds."""
from typing import Dict, Optional, Tuple

# A fetch stall below this share of E2E: the accelerator rarely waits, compute bounds the epoch.
COMPUTE_BOUND_STALL_SHARE = 0.10
# One cause owning at least this share of the stall names the bottleneck; between the two: mixed.
DOMINANT_SHARE = 0.70
# Disk evidence: busy at least this fraction of the epoch, or less than this share of the dataset cached.
DISK_BUSY = 0.50
MOSTLY_CACHED = 0.95

# How much of the dataset the epoch's reads could find in the page cache: the lowest ratio over the epoch
# (at its end the epoch's own reads have filled the cache).
CACHED = "page_cache_lowest_ratio"

Stats = Dict[str, Dict[str, Optional[float]]]


def mean_of(stats: Stats, name: str) -> Optional[float]:
    """The mean of field ``name`` in a summary record; None where unknown."""
    return stats.get(name, {}).get("mean")


# The run's own storage reads below this share of the disk's, while the disk read at least this many bytes per
# second: the disk was busy with something else too (below the floor the disk hardly read at all).
OWN_SHARE = 0.5
OTHER_READS_FLOOR = 1e6


def _disk_text(stats: Stats) -> str:
    """The exporter's side of the evidence, ``unknown`` where it is missing, and the run's own reads beside the
    whole disk's where the trainer counted them (/proc/<pid>/io)."""
    parts = []
    for name, text, scale, unknown in (("disk_utilisation_ratio", "disk busy {:.0%}", 1.0, "disk busy unknown"),
                                       (CACHED, "{:.0%} cached", 1.0, "page cache unknown"),
                                       ("read_bytes_per_second", "reads {:.2f} MB/s", 1e-6, "read rate unknown")):
        value = mean_of(stats, name)
        parts.append(unknown if value is None else text.format(value * scale))
    own, disk = mean_of(stats, "run_read_bytes_per_second"), mean_of(stats, "read_bytes_per_second")
    if own is not None:
        parts.append("the run's own reads {:.2f} MB/s".format(own / 1e6))
        if not _disk_reads_are_the_runs(stats):
            parts.append("the disk was busy with something else ({:.0%} of its reads were the run's)".format(
                own / disk))
    return ", ".join(parts)


def _disk_reads_are_the_runs(stats: Stats) -> bool:
    """False only where the trainer counted its own reads and they were a small part of the disk's."""
    own, disk = mean_of(stats, "run_read_bytes_per_second"), mean_of(stats, "read_bytes_per_second")
    return own is None or not disk or disk < OTHER_READS_FLOOR or own >= OWN_SHARE * disk


def _disk_serving(stats: Stats) -> bool:
    """The disk was busy serving a dataset not all in the page cache."""
    busy, cached = mean_of(stats, "disk_utilisation_ratio"), mean_of(stats, CACHED)
    return busy is not None and busy >= DISK_BUSY and (cached is None or cached < MOSTLY_CACHED) \
        and _disk_reads_are_the_runs(stats)


def _disk_resting(stats: Stats) -> bool:
    """The disk was mostly idle and the dataset cached: reads came from memory."""
    busy, cached = mean_of(stats, "disk_utilisation_ratio"), mean_of(stats, CACHED)
    return busy is not None and busy < DISK_BUSY and cached is not None and cached >= MOSTLY_CACHED


def diagnose(stats: Stats) -> Tuple[Optional[str], str]:
    """(bottleneck, evidence): ``storage``, ``preprocessing``, ``compute`` or
    ``mixed``; None (with the reason as evidence) when E2E or the stall is unknown."""
    e2e, stall = mean_of(stats, "e2e_seconds"), mean_of(stats, "fetch_stall_seconds")
    if not e2e or stall is None:
        return None, "no diagnosis: E2E or fetch stall missing"
    share = stall / e2e
    head = "stall {:.0%} of E2E".format(share)
    if share < COMPUTE_BOUND_STALL_SHARE:
        return "compute", "{} (< {:.0%}); {}".format(head, COMPUTE_BOUND_STALL_SHARE, _disk_text(stats))
    storage = mean_of(stats, "fetch_stall_storage_seconds")
    preprocess = mean_of(stats, "fetch_stall_preprocess_seconds")
    if storage is None or preprocess is None or storage + preprocess <= 0:
        if _disk_serving(stats):
            return "storage", "{}, no stall split from the trainer; {}".format(head, _disk_text(stats))
        return "mixed", "{}, no stall split from the trainer to name a cause; {}".format(head, _disk_text(stats))
    storage_share = storage / (storage + preprocess)
    head = "{}: {:.0%} storage, {:.0%} preprocessing".format(head, storage_share, 1 - storage_share)
    if storage_share >= DOMINANT_SHARE:
        if _disk_resting(stats):
            return "mixed", "{}, but the disk is idle and the dataset cached; {}".format(head, _disk_text(stats))
        return "storage", "{}; {}".format(head, _disk_text(stats))
    if storage_share <= 1 - DOMINANT_SHARE:
        return "preprocessing", "{}; {}".format(head, _disk_text(stats))
    return "mixed", "{}; {}".format(head, _disk_text(stats))

"""Window arithmetic on raw counter samples: the increase of a counter over an
exact time window, interpolating linearly between scrapes at both edges.

Pure functions on lists of ``(unix_seconds, value)`` so that they can be tested
exactly on synthetic series. A Prometheus counter drops to a lower value only
when its process restarts; as in PromQL's ``increase()``, such a drop is read as
a reset to zero followed by the new value.
"""
import statistics
from typing import List, Optional, Sequence, Tuple

Sample = Tuple[float, float]


def reset_adjusted(samples: Sequence[Sample]) -> List[Sample]:
    """The counter with resets removed: a running total that never decreases."""
    adjusted = []  # type: List[Sample]
    total = 0.0
    previous = None  # type: Optional[float]
    for t, value in samples:
        if previous is None:
            total = value
        elif value >= previous:
            total += value - previous
        else:
            total += value  # restarted from zero, then counted up to `value`
        adjusted.append((t, total))
        previous = value
    return adjusted


def value_at(samples: Sequence[Sample], t: float) -> Optional[float]:
    """Linear interpolation of a (reset-adjusted) series at time ``t``; None if
    ``t`` lies outside the samples (no extrapolation: we never guess)."""
    if not samples or t < samples[0][0] or t > samples[-1][0]:
        return None
    for (t0, v0), (t1, v1) in zip(samples, samples[1:]):
        if t0 <= t <= t1:
            if t1 == t0:
                return v1
            return v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    return samples[-1][1]  # a single sample exactly at t


def increase(samples: Sequence[Sample], start: float, end: float) -> Optional[float]:
    """How much the counter grew between ``start`` and ``end`` (seconds, unix).

    None when the samples do not cover the whole window: then the increase is
    unknown, never zero.
    """
    if end < start:
        raise ValueError("window ends before it starts: {} < {}".format(end, start))
    ordered = sorted(samples)
    adjusted = reset_adjusted(ordered)
    first = value_at(adjusted, start)
    last = value_at(adjusted, end)
    if first is None or last is None:
        return None
    return last - first


def increase_bound(samples: Sequence[Sample], start: float, end: float, lag: float) -> Optional[float]:
    """How far ``increase(samples, start, end)`` can be from what the counter counted over [start, end].

    The counter only grows, and a sample stamped t counts what happened up to some moment in [t − lag, t]
    (an exporter's counter is as of its last sample of its source). So the count at an edge e lies between
    the last sample at or before e and the first at or after e + lag, and the increase between the extremes
    of the two edges' ranges; the bound is the farther of those from the interpolated increase. None when
    a sample needed for it is missing (the data ends within ``lag`` of the end)."""
    estimate = increase(samples, start, end)
    adjusted = reset_adjusted(sorted(samples))

    def count_range(edge: float) -> Optional[Tuple[float, float]]:
        before = [v for t, v in adjusted if t <= edge]
        after = [v for t, v in adjusted if t >= edge + lag]
        return (before[-1], after[0]) if before and after else None
    at_start, at_end = count_range(start), count_range(end)
    if estimate is None or at_start is None or at_end is None:
        return None
    least, most = max(at_end[0] - at_start[1], 0.0), at_end[1] - at_start[0]
    return max(estimate - least, most - estimate)


def rate(samples: Sequence[Sample], start: float, end: float) -> Optional[float]:
    """Average per-second increase over the window (e.g. joules → watts,
    reads → IOPS); None when unknown or the window is empty."""
    grown = increase(samples, start, end)
    if grown is None or end <= start:
        return None
    return grown / (end - start)


def bracket(samples: Sequence[Sample], start: float, end: float) -> List[Sample]:
    """The sorted samples from the last one at or before ``start`` to the first
    one at or after ``end``: those an interpolation over the window reads."""
    ordered = sorted(samples)
    before = [i for i, (t, _) in enumerate(ordered) if t <= start]
    after = [i for i, (t, _) in enumerate(ordered) if t >= end]
    first = before[-1] if before else 0
    last = after[0] if after else len(ordered) - 1
    return ordered[first:last + 1]


def typical_interval(samples: Sequence[Sample]) -> Optional[float]:
    """Median time between consecutive samples (the scrape interval); None under two samples."""
    times = sorted(t for t, _ in samples)
    steps = [b - a for a, b in zip(times, times[1:]) if b > a]
    return statistics.median(steps) if steps else None


def doubts(samples: Sequence[Sample], start: float, end: float, max_gap: float, edges_only: bool) -> List[str]:
    """Why a counter's increase over [start, end] is not to be trusted: the
    counter went down between two of the samples read (its process restarted
    and lost what it counted while down), or more than ``max_gap`` seconds
    passed between two of them. A gap inside a window does not matter to a
    counter that kept counting (``edges_only``); one around an edge leaves the
    interpolation there unbounded."""
    reasons = []
    inside = bracket(samples, start, end)
    for (t0, v0), (t1, v1) in zip(inside, inside[1:]):
        if v1 < v0:
            reasons.append("the counter went down")
        if t1 - t0 > max_gap and (not edges_only or t0 <= start <= t1 or t0 <= end <= t1):
            reasons.append("no sample for {:.1f} s".format(t1 - t0))
    return reasons

"""The stall split on hand-built loader schedules: DataLoader's own (batch i to worker i mod W, prefetch factor x W
indices outstanding, a new one sent as each batch is handed over in order), each batch's read and preprocess
seconds given, the loop stepping a fixed time. No clocks, no processes: exact figures."""
import random
from typing import List, Optional, Sequence, Tuple

import pytest

from trainer.meter import OFF, TIED, BatchTiming, HostStep, LoadTimes, StallSplitter

STEP_S = 0.005


def simulate(makes: Sequence[Tuple[float, float]], workers: int, prefetch: int = 2,
             boot: Optional[Sequence[float]] = None) -> List[BatchTiming]:
    """The loop's timings for batches of (read, preprocess) seconds; ``boot``: when each worker can start."""
    free = list(boot or [0.0] * workers)
    handed = []  # type: List[float]
    timings = []
    now = 0.0
    for i, (read, preprocess) in enumerate(makes):
        worker = i % workers if workers else -1
        if workers:
            sent = handed[i - prefetch * workers] if i >= prefetch * workers else 0.0
            began = max(free[worker], sent)
            free[worker] = began + read + preprocess
        else:
            began = now  # the main process makes it inside its wait
        ready = began + read + preprocess
        ended = max(now, ready)
        handed.append(ended)
        host = HostStep(now, ended, ended, ended + STEP_S, LoadTimes(read, preprocess, worker, began, ready))
        timings.append(BatchTiming(ended - now, STEP_S, ended + STEP_S - now, host=host))
        now = ended + STEP_S
    return timings


def split(timings: List[BatchTiming], workers: int, prefetch: int = 2) -> List[BatchTiming]:
    out = []  # type: List[BatchTiming]
    splitter = StallSplitter(out.append)
    splitter.start(workers * prefetch)
    for timing in timings:
        splitter.add(timing)
    splitter.flush()
    return out


def storage_part(timings: List[BatchTiming]) -> float:
    """The stall's share charged to reads over the epoch."""
    return sum(t.fetch_stall_storage_s for t in timings) / sum(t.fetch_stall_s for t in timings)


@pytest.mark.parametrize("boot", [None, (0.0, 0.0, 0.0, 0.1)])
def test_readers_made_in_parallel_with_a_slower_preprocessing_worker_are_charged_nothing(boot):
    """The issue's case: worker 0 preprocesses 80 ms a batch, workers 1-3 read 60 ms a batch. Every batch in the
    making weighted over the wait gave 64 % storage; worker 0 alone paces the epoch, so it is all
    preprocessing, also where a reader started late and is the one waited for every round."""
    makes = [(0.0, 0.08) if i % 4 == 0 else (0.06, 0.0) for i in range(32)]
    timings = split(simulate(makes, 4, boot=boot), 4)
    waited = [t.load.worker for t in timings if t.fetch_stall_s > 0.01]
    assert (3 in waited) == (boot is not None)
    assert sum(t.fetch_stall_s for t in timings) > 0.5 * 8 * 0.08
    assert storage_part(timings) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("workers", [2, 4])
@pytest.mark.parametrize("late", [0, 1])
def test_equally_slow_workers_share_the_wait_whichever_is_behind(workers, late):
    """Even batches read 80 ms, odd batches preprocess 80 ms: half and half, whether the reading or the preprocessing
    worker started 30 ms late (and is waited for every round) and however the two workers' batches overlap."""
    makes = [(0.08, 0.0) if i % 2 == 0 else (0.0, 0.08) for i in range(32)]
    boot = [0.03 if w % 2 == late else 0.0 for w in range(workers)]
    assert storage_part(split(simulate(makes, workers, boot=boot), workers)) == pytest.approx(0.5, abs=0.05)


def test_a_worker_somewhat_faster_than_the_slowest_shares_less():
    """Up to TIED faster a worker shares fully, from OFF faster not at all, less and less between."""
    shares = []
    for faster in (TIED, (TIED + OFF) / 2, OFF):
        makes = [(0.08, 0.0) if i % 2 == 0 else (0.0, 0.08 * (1 - faster)) for i in range(32)]
        shares.append(storage_part(split(simulate(makes, 2), 2)))
    assert shares[0] < shares[1] < shares[2] == pytest.approx(1.0)


def test_without_workers_each_wait_is_its_own_batchs_making():
    makes = [(0.01 * (i % 3), 0.02) for i in range(12)]
    for timing in split(simulate(makes, 0), 0):
        assert timing.storage_share == pytest.approx(timing.read_s / (timing.read_s + timing.preprocess_s))


def test_on_random_schedules_the_slowest_worker_alone_is_charged_and_the_split_adds_up():
    """Random loaders, every other worker at least OFF faster than worker 0: every wait is split as worker 0's own work
    (each of its batches reads the same share of its time, the others anything), and storage + preprocessing is
    the stall for every batch."""
    rng = random.Random(25)
    for _ in range(200):
        workers, prefetch = rng.randint(1, 6), rng.randint(1, 3)
        reads = rng.random()
        makes = []
        for i in range(rng.randint(1, 40)):
            seconds = rng.uniform(0.05, 0.1) if i % workers == 0 else rng.uniform(0.0, 0.05 * (1 - OFF))
            read = seconds * (reads if i % workers == 0 else rng.random())
            makes.append((read, seconds - read))
        timings = split(simulate(makes, workers, prefetch, [rng.uniform(0, 0.05) for _ in range(workers)]),
                        workers, prefetch)
        for timing in timings:
            assert 0.0 <= timing.storage_share <= 1.0
            assert timing.fetch_stall_storage_s + timing.fetch_stall_preprocess_s == pytest.approx(timing.fetch_stall_s)
        stall = sum(t.fetch_stall_s for t in timings)
        if stall > 0.001:
            assert storage_part(timings) == pytest.approx(reads, abs=1e-6), (workers, prefetch, len(makes))

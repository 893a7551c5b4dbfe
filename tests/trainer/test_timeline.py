"""The loader timeline with real DataLoader workers: the stall charged by what the loader was doing during each
wait, start-up and shutdown apart, and what-ifs replayed on it checked against measured runs of the predicted
configuration.

The loader alternates: with shuffle off, every sample of an even batch only reads (a timed read of 20 ms),
every sample of an odd batch only preprocesses (20 ms), so the loader's work is half reading, half
preprocessing, and with several workers the worker that reads and the one that preprocesses run side by side.
Another loader gives one worker in four all the preprocessing, 20 ms a sample, and the other three short reads.
"""
import json
import re
import statistics
import time
from typing import List, Sequence, Tuple

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from report.diagnosis import diagnose
from trainer import data
from trainer.data import TimedSamples, collate_timed
from trainer.machine import Machine
from trainer.meter import StepMeter, Window
from trainer.precision import with_spread
from trainer.timeline import Timeline, replay, replayable, trace_events, what_ifs

BATCH = 4
BATCHES = 16
SAMPLE_S = 0.02
COMPUTE_S = 0.005


ALTERNATING = ((SAMPLE_S, 0.0), (0.0, SAMPLE_S))  # per batch, by its index mod 2: a sample's (read, preprocess)
# one preprocessing-bound worker of four beside three reading ones (batch i goes to worker i mod 4)
ONE_PREPROCESSING = ((0.0, SAMPLE_S),) + ((0.3 * SAMPLE_S, 0.0),) * 3


class Sleeping(Dataset):
    """Each sample of batch b reads for ``kinds[b % len(kinds)][0]`` seconds and preprocesses for ``[1]``, both
    sleeps (as a slow read waits; no CPU contention to blur the truth); ``cached``: the reads take no time (the
    dataset in memory)."""

    def __init__(self, kinds: Tuple[Tuple[float, float], ...] = ALTERNATING, cached: bool = False,
                 batches: int = BATCHES) -> None:
        self.kinds, self.cached, self.batches = kinds, cached, batches

    def __len__(self) -> int:
        return BATCH * self.batches

    def __getitem__(self, index: int) -> torch.Tensor:
        read_s, preprocess_s = self.kinds[(index // BATCH) % len(self.kinds)]
        if read_s:
            began = time.perf_counter()
            if not self.cached:
                time.sleep(read_s)
            data._ReadClock.seconds += time.perf_counter() - began
        if preprocess_s:
            time.sleep(preprocess_s)
        return torch.zeros(1)


def loader(workers: int, cached: bool = False, kinds: Tuple[Tuple[float, float], ...] = ALTERNATING,
           batches: int = BATCHES) -> DataLoader:
    return DataLoader(TimedSamples(Sleeping(kinds, cached, batches)), batch_size=BATCH, shuffle=False,
                      num_workers=workers, collate_fn=collate_timed, **({"prefetch_factor": 2} if workers else {}))


def alternately(loaders: Sequence[DataLoader], epochs: int = 4) -> List[List[Window]]:
    """Each loader's epochs, measured in turn (an epoch of the first, of the second, ..., again): a burst of load
    on a shared machine stretches the sleeps of whatever runs during it, by 45 % for a whole run of a few
    seconds under two busy loops on two cores, so runs measured one after the other differ by more than the
    what-ifs do; taken in turn, a burst falls on neighbouring epochs of every configuration."""
    meters = [StepMeter("cpu", "lazy") for _ in loaders]
    windows = [[] for _ in loaders]  # type: List[List[Window]]
    for _ in range(epochs):
        for each, meter, measured in zip(loaders, meters, windows):
            meter.begin_window("epoch")
            for _batch in meter.wrap(each):
                with meter.step():
                    time.sleep(COMPUTE_S)
            measured.append(meter.end_window("epoch"))
    return [measured[1:] for measured in windows]  # epoch 0 warms up


def measure(workers: int, cached: bool = False, epochs: int = 4, kinds: Tuple[Tuple[float, float], ...] = ALTERNATING,
            batches: int = BATCHES) -> List[Window]:
    return alternately([loader(workers, cached, kinds, batches)], epochs)[0]


def replay_savings(timeline: Timeline) -> Tuple[float, float]:
    """Seconds the replayed loop saves with every read taken out, and with every batch's preprocessing taken out."""
    r, why = replayable(timeline)
    assert r is not None, why
    loop = [replay(r, r.workers, make, r.compute, r.assigned)
            for make in ([a + b for a, b in zip(r.read, r.preprocess)], r.preprocess, r.read)]
    return loop[0] - loop[1], loop[0] - loop[2]


@pytest.mark.parametrize("workers", [0, 2, 4])
def test_the_stall_is_charged_to_what_the_loader_was_doing_during_the_wait(workers):
    """The truth is half and half: every worker count gives it within 10 points (the batch's own ratio gave
    89 % storage at 2 workers and 98 % at 4), whichever worker started first and is waited for. The split follows
    the slowest workers, so on a machine loaded enough that one worker's batches take longer all epoch (112 ms
    against 85 ms for the others, measured under two CPU hogs) it leans to that worker's work: then only the way
    the replay says that taking it out saves more (there -10 % cached)."""
    for window in measure(workers, epochs=3):
        assert window.fetch_stall_s > 0.5 * BATCHES * BATCH * SAMPLE_S / max(workers, 1) * 0.5
        assert window.fetch_stall_storage_s + window.fetch_stall_preprocess_s == pytest.approx(window.fetch_stall_s)
        share = window.fetch_stall_storage_s / window.fetch_stall_s
        if share != pytest.approx(0.5, abs=0.10):
            cached, unprocessed = replay_savings(window.timeline)
            assert abs(cached - unprocessed) > 0.05 * window.fetch_stall_s, (workers, share, cached, unprocessed)
            assert (share > 0.5) == (cached > unprocessed), (workers, share, cached, unprocessed)


def test_the_diagnosis_and_the_cached_what_if_agree_where_one_worker_preprocesses():
    """The issue's case: worker 0 preprocesses (80 ms a batch), workers 1-3 only read (24 ms a batch: a loaded
    machine stretches short sleeps most, and they stay well faster) in parallel and then idle, so worker 0 alone
    paces the epoch and caching changes nothing. Charging each wait to every batch in the making gave 44 %
    storage, "mixed" (64 %, nearer "storage", with 60 ms reads: test_critical_path.py); along the critical path
    it is preprocessing, and the cached what-if predicts no change, as a cached run measures."""
    batches = 32  # the first round, where every worker starts at once, is one eighth of the epoch
    cold, cached = alternately([loader(4, kinds=ONE_PREPROCESSING, batches=batches),
                                loader(4, cached=True, kinds=ONE_PREPROCESSING, batches=batches)], epochs=3)
    for window in cold:
        stats = {"e2e_seconds": window.duration_s, "fetch_stall_seconds": window.fetch_stall_s,
                 "fetch_stall_storage_seconds": window.fetch_stall_storage_s,
                 "fetch_stall_preprocess_seconds": window.fetch_stall_preprocess_s}
        bottleneck, evidence = diagnose({name: {"mean": value} for name, value in stats.items()})
        assert bottleneck == "preprocessing", evidence
        assert window.fetch_stall_storage_s + window.fetch_stall_preprocess_s == pytest.approx(window.fetch_stall_s)
        change = what_ifs(window.timeline, window.duration_s, Machine(2, 0.0))["dataset_cached"].seconds / window.duration_s
        assert change == pytest.approx(1.0, abs=0.10), evidence  # worker 0 still paces the epoch
    # two runs on a busy machine: the least disturbed epoch of each, within the tolerance of the measured-run
    # comparisons below
    measured = min(w.duration_s for w in cached) / min(w.duration_s for w in cold)
    assert measured == pytest.approx(1.0, abs=0.15)


def test_loader_start_up_and_shutdown_are_their_own_figures_not_stall_or_overhead():
    window = measure(2, epochs=2)[0]
    timeline = window.timeline
    assert window.loader_startup_s > 0 and window.loader_shutdown_s > 0
    assert timeline.startup[1] - timeline.startup[0] == pytest.approx(window.loader_startup_s)
    assert timeline.startup[1] <= timeline.columns["wait_began"][0]  # the first wait starts after iter()
    # every second of the window is one of the named parts: no misfiled time left as "overhead"
    assert abs(window.overhead_s) < 0.05 * window.duration_s
    assert window.fetch_stall_s + window.compute_s + window.host_overhead_s + window.loader_startup_s \
        + window.loader_shutdown_s == pytest.approx(window.duration_s, rel=0.05)


def test_the_timeline_records_which_worker_made_each_batch_and_when():
    timeline = measure(2, epochs=2)[0].timeline
    c = timeline.columns
    assert len(timeline) == BATCHES and timeline.complete and (timeline.workers, timeline.prefetch_factor) == (2, 2)
    assert [int(w) for w in c["worker"]] == [i % 2 for i in range(BATCHES)]  # round-robin
    for i in range(BATCHES):
        assert c["began"][i] < c["ready"][i] <= c["wait_ended"][i] + 1e-3  # one clock for all processes
        assert c["wait_began"][i] <= c["wait_ended"][i] <= c["step_began"][i] < c["step_ended"][i]
        # the even batches read, the odd ones do not; sleeps never end early, and a loaded machine stretches them
        # (80 ms of reads measured 109 ms), but never past the making of their batch
        if i % 2 == 0:
            assert BATCH * SAMPLE_S <= c["read_s"][i] <= c["ready"][i] - c["began"][i]
        else:
            assert c["read_s"][i] == 0.0
        assert c["cpu_s"][i] < 0.5 * (c["ready"][i] - c["began"][i])  # sleeping is not CPU time
    again = Timeline.from_dict(json.loads(json.dumps(timeline.to_dict())))
    assert again.to_dict() == timeline.to_dict()


def test_replaying_a_measured_epoch_unchanged_gives_its_loop_back():
    for window in measure(2, epochs=3):
        r, why = replayable(window.timeline)
        assert r is not None, why
        loop = replay(r, r.workers, [a + b for a, b in zip(r.read, r.preprocess)], r.compute, r.assigned)
        assert loop == pytest.approx(r.span, rel=0.05)


def spread(values: List[float]) -> Tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values)


def test_the_cached_what_if_matches_a_measured_cached_run():
    """Caching the dataset speeds the reading worker only: the preprocessing one still bounds the epoch
    (the old ratio model predicted -47 %). Prediction from the replays within 15 % of the measured run."""
    cold, cached = alternately([loader(2), loader(2, cached=True)])
    predicted = spread([what_ifs(w.timeline, w.duration_s, Machine(2, 0.0))["dataset_cached"].seconds for w in cold])
    measured = spread([w.duration_s for w in cached])
    error = (predicted[0] - measured[0]) / measured[0]
    assert abs(error) <= 0.15, "predicted {}, measured {}".format(with_spread(*predicted, "s"),
                                                                  with_spread(*measured, "s"))


def test_doubled_workers_bracket_a_measured_run_with_twice_the_workers():
    """Whether storage serves more readers as fast is not in one epoch: the two predictions bracket the run
    with twice the workers (here reads that wait, like network storage, so the scaling one is the closer; its
    accuracy on real loaders is bench/whatif_accuracy.py's to show, on a quiet machine)."""
    two, four = alternately([loader(2), loader(4)])
    out = [what_ifs(w.timeline, w.duration_s, Machine(8, 0.0)) for w in two]
    scales = spread([o["workers_doubled_storage_scales"].seconds for o in out])
    shared = spread([o["workers_doubled"].seconds for o in out])
    measured = spread([w.duration_s for w in four])
    # the bracket within 20 %: one configuration of these sleeping loaders measured 0.47-0.57 s over four runs on a
    # shared 2-core VM (sleeps stretch with the load), so a prediction from one run and a measurement of another
    # differ by that much; which of the two predictions is nearer is the sharp check
    assert scales[0] * 0.8 <= measured[0] <= shared[0] * 1.2, (scales, measured, shared)
    assert abs(scales[0] - measured[0]) < abs(shared[0] - measured[0]), (scales, measured, shared)


def test_a_dataset_bigger_than_free_memory_gets_no_cached_prediction():
    window = measure(0, epochs=2)[0]
    out = what_ifs(window.timeline, window.duration_s, Machine(2, 0.0), free_memory_bytes=2 ** 30,
                   dataset_bytes=3 * 2 ** 30)
    assert out["dataset_cached"].seconds is None
    assert out["dataset_cached"].basis == "does not fit: 3.00 GiB dataset, 1.00 GiB free"
    assert out["workers_doubled"].seconds is None and "workers 0" in out["workers_doubled"].basis


def test_the_trace_has_a_lane_per_worker_and_the_main_process():
    timeline = measure(2, epochs=2)[0].timeline
    events = trace_events(timeline)
    lanes = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert lanes == {"main process", "worker 0", "worker 1"}
    spans = [e for e in events if e["ph"] == "X"]
    assert {e["name"] for e in spans} >= {"wait", "compute", "read", "preprocess", "loader startup",
                                          "loader shutdown"}
    assert all(e["ts"] >= 0 and e["dur"] > 0 for e in spans)
    reads = [e for e in spans if e["name"] == "read"]
    assert {e["tid"] for e in reads} == {1}  # worker 0 makes the even, reading batches


def test_each_prediction_carries_the_compute_it_assumes():
    """What a measured run of the change is checked against (report.whatif): the compute as measured where the
    change leaves the steps alone, scaled where it does not; none without the epoch's measured compute."""
    window = measure(2, epochs=2)[-1]
    out = what_ifs(window.timeline, window.duration_s, Machine(1, window.compute_s), compute_s=window.compute_s)
    assert out["dataset_cached"].compute_seconds == window.compute_s > 0
    assert out["compute_speedup=2"].compute_seconds == pytest.approx(window.compute_s / 2)
    # one CPU, a main process busy for its whole step: its steps scale with the CPU sharing the replay solved for,
    # the measured epoch's own sharing taken out first (the basis says both)
    doubled = out["workers_doubled"]
    shared, measured = (float(x) for x in re.search(r"CPU work x([0-9.]+) from sharing \(measured x([0-9.]+)\)",
                                                    doubled.basis).groups())
    # the factors are printed to 2 decimals
    assert doubled.compute_seconds == pytest.approx(window.compute_s * shared / measured, rel=0.02)
    assert what_ifs(window.timeline, window.duration_s, Machine(1, 0.0))["dataset_cached"].compute_seconds is None

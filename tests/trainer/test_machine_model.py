"""One model of the machine behind every what-if (trainer.timeline.CpuModel on trainer.machine.Machine): the cores
the run had shared by its main process and its workers in every replay, reads split into the wait for the device
and the CPU spent on them, floors at the CPU work over the cores and at the compute.

Synthetic timelines are scheduled here as a DataLoader schedules them (round-robin workers, prefetch factor 2),
from each batch's costs; one real run checks the page-cache verdict on the kernel's own I/O accounting."""
import json
import os
import re
import subprocess
import sys
from typing import List, NamedTuple, Optional

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from trainer.afterwait import AfterWait
from trainer.machine import Machine, cpu_sample, private_bytes
from trainer.meter import BatchTiming, HostStep, LoadTimes
from trainer.pagecache import warm
from trainer.synthetic import write_jpeg_folder
from trainer.timeline import Timeline, what_ifs

from .conftest import REPO, cli_env, small_run_args

STARTUP = SHUTDOWN = 0.01


class Batch(NamedTuple):
    read_s: float  # wall time of its reads
    read_cpu_s: float  # CPU seconds inside them
    preprocess_s: float  # wall time of the rest of its making
    preprocess_cpu_s: float
    step_s: float
    device_bytes: int = 0  # /proc/<pid>/io read_bytes of its making
    rchar: int = 0  # bytes its read calls returned
    private_bytes: Optional[int] = None
    run_delay_s: float = 0.0  # its maker's wait for a CPU while making it (inside preprocess_s)


def timeline_of(batches: List[Batch], workers: int, prefetch: int = 2) -> Timeline:
    """The epoch as DataLoader would run it with these costs, nothing slowed by sharing a CPU."""
    timeline = Timeline()
    timeline.loader_event("startup", 0.0, STARTUP, workers, prefetch)
    free = [STARTUP] * max(workers, 1)
    received = []  # type: List[float]
    t = STARTUP
    for i, b in enumerate(batches):
        worker = i % workers if workers else -1
        if workers:
            began = max(free[worker], received[i - workers * prefetch] if i >= workers * prefetch else STARTUP)
        else:
            began = t
        ready = began + b.read_s + b.preprocess_s
        free[worker] = ready
        wait_ended = max(t, ready)
        received.append(wait_ended)
        load = LoadTimes(b.read_s, b.preprocess_s, worker, began, ready, b.read_cpu_s + b.preprocess_cpu_s,
                         b.rchar, (b.device_bytes, b.rchar, 1), b.read_cpu_s, b.private_bytes, b.run_delay_s)
        host = HostStep(t, wait_ended, wait_ended, wait_ended + b.step_s, load)
        timeline.add(BatchTiming(wait_ended - t, b.step_s, wait_ended + b.step_s - t, host=host, storage_share=0.5))
        t = wait_ended + b.step_s
    timeline.loader_event("shutdown", t, t + SHUTDOWN, workers, prefetch)
    return timeline


def epoch_s(timeline: Timeline) -> float:
    return timeline.shutdown[1] - timeline.startup[0]


def cold_one_core(n: int = 20) -> List[Batch]:
    """A worker reading for 100 ms (all of it waiting for the device), decoding for 50 ms of CPU, and a step of
    50 ms of CPU that runs while the worker waits: on one core nothing competes, the epoch is the reads'."""
    return [Batch(0.1, 0.0, 0.05, 0.05, 0.05, device_bytes=100000, rchar=100000)] * n


def test_once_reads_stop_waiting_the_worker_competes_with_the_step_for_the_one_core():
    """The old replay took the reads out and let the decoding and the steps run side by side: half the CPU work
    the core must do (1.07 s predicted for 2 s of CPU)."""
    batches = cold_one_core()
    timeline = timeline_of(batches, workers=1)
    cpu_work = sum(b.preprocess_cpu_s + b.step_s for b in batches)  # 2 s
    machine = Machine(1, main_cpu_s=1.0, workers_cpu_s=1.0, busy_cpu_s=cpu_work, span_s=epoch_s(timeline))
    cached = what_ifs(timeline, epoch_s(timeline), machine)["dataset_cached"]
    assert cpu_work <= cached.seconds <= 1.05 * (cpu_work + STARTUP + SHUTDOWN), cached
    assert cached.seconds < epoch_s(timeline)  # the waits are gone all the same
    assert "on 1.00 of 1 CPUs" in cached.basis


def test_the_waits_for_the_core_measured_in_the_cold_epoch_are_not_counted_twice_once_cached():
    """The cold epoch of the one-core case, its decoding slowed half again while the step ran beside it (25 ms of
    each 75 ms making waited for the core): the old replay left those waits out of its replay of the measured
    epoch, so the prediction (epoch - replay + replay changed) carried them as the model's error on top of the
    cached epoch's own sharing: 2.5 s for 2 s of CPU work on one core."""
    batches = [Batch(0.1, 0.0, 0.075, 0.05, 0.05, device_bytes=100000, rchar=100000, run_delay_s=0.025)] * 20
    timeline = timeline_of(batches, workers=1)
    cpu_work = sum(b.preprocess_cpu_s + b.step_s for b in batches)  # 2 s
    machine = Machine(1, main_cpu_s=1.0, workers_cpu_s=1.0, busy_cpu_s=cpu_work, span_s=epoch_s(timeline))
    cached = what_ifs(timeline, epoch_s(timeline), machine)["dataset_cached"]
    assert cpu_work <= cached.seconds <= 1.05 * (cpu_work + STARTUP + SHUTDOWN), cached
    # and where nothing changes, the replay is the epoch: a storage rate equal to the measured one predicts it
    same = what_ifs(timeline, epoch_s(timeline), machine, storage_bps=[100000 / 0.1])["storage_bps=1e+06"]
    assert same.seconds == pytest.approx(epoch_s(timeline), rel=0.01), same


@pytest.mark.parametrize("k", [2.0, 4.0])
def test_a_faster_step_shortens_the_waits_for_the_core_it_made_the_worker_take(k):
    """One core, the worker and the step taking turns on it (each making waited as long for the core as it ran,
    the step likewise): with steps K times faster the worker meets 1/K of them, and the epoch is the CPU work on
    the core. Holding each making as slow as measured predicted 2.07 s for 1.52 s of CPU work at K=2 (review)."""
    n = 20
    batches = [Batch(0.0, 0.0, 0.1, 0.05, 0.1, rchar=100000, run_delay_s=0.05)] * n
    timeline = timeline_of(batches, workers=1)
    span = epoch_s(timeline)
    machine = Machine(1, main_cpu_s=n * 0.05, workers_cpu_s=n * 0.05, busy_cpu_s=n * 0.1, span_s=span,
                      main_sharing=2.0)
    faster = what_ifs(timeline, span, machine, compute_speedup=[k])["compute_speedup={:g}".format(k)]
    cpu_work = n * (0.05 + 0.05 / k) + STARTUP + SHUTDOWN
    assert cpu_work * (1 - 1e-9) <= faster.seconds <= 1.05 * cpu_work, (faster, cpu_work)


def test_other_tenants_busy_time_takes_cores_from_the_run():
    """Two CPUs, but another tenant kept one busy all epoch while the other had room: one thread of its own, so
    the cached run's two threads get two thirds of both CPUs; without that record the replay counts on both."""
    batches = cold_one_core()
    timeline = timeline_of(batches, workers=1)
    span = epoch_s(timeline)
    alone = Machine(2, 1.0, 1.0, busy_cpu_s=2.0, span_s=span)
    shared = Machine(2, 1.0, 1.0, busy_cpu_s=2.0 + span, span_s=span)
    assert shared.others_cores(1.0) == pytest.approx(1.0) and alone.others_cores(1.0) == 0
    on_two = what_ifs(timeline, span, alone)["dataset_cached"]
    on_one = what_ifs(timeline, span, shared)["dataset_cached"]
    assert on_two.seconds < 0.6 * span, on_two
    assert on_one.seconds == pytest.approx(2.0 / (4 / 3), rel=0.05), on_one
    assert "on 1.33 of 2 CPUs (other tenants' threads: 1.00)" in on_one.basis


def test_tenants_that_only_filled_the_idle_core_leave_caching_its_gain():
    """One core that was never idle: the run used 2 s of the 3.07 s epoch and other tenants the rest, while the
    run waited for its reads. Had the run wanted more they would have had less: the cached epoch is the CPU work at
    the run's even share beside the tenants (two threads beside 0.35 of one), not the cold epoch again."""
    batches = cold_one_core()
    timeline = timeline_of(batches, workers=1)
    span = epoch_s(timeline)
    cached = what_ifs(timeline, span, Machine(1, 1.0, 1.0, busy_cpu_s=span, span_s=span))["dataset_cached"]
    tenants = (span - 2.0) / span
    assert cached.seconds == pytest.approx(2.0 / (2 / (2 + tenants)), rel=0.05), cached
    assert cached.seconds < 0.8 * span


def test_caching_removes_the_reads_wait_and_keeps_their_cpu():
    """100 ms reads of which 40 ms are CPU (system calls, the copy out of the page cache): cached, the worker still
    spends 40 + 50 ms a batch (the old replay: 50 ms, 1.03 s for the epoch)."""
    batches = [Batch(0.1, 0.04, 0.05, 0.05, 0.01, device_bytes=100000, rchar=100000)] * 20
    timeline = timeline_of(batches, workers=1)
    span = epoch_s(timeline)
    cached = what_ifs(timeline, span, Machine(4, 0.2, 1.8, busy_cpu_s=2.0, span_s=span))["dataset_cached"]
    assert cached.seconds == pytest.approx(20 * 0.09 + 0.01 + STARTUP + SHUTDOWN, rel=0.03), cached
    assert "device waits (1.2 s over the workers) taken out, the reads' CPU (0.8 s) kept" in cached.basis


@pytest.mark.parametrize("standard_error, making_s", [(0.001, 0.05), (0.006, 0.06)])
def test_caching_takes_out_what_the_decoding_cost_more_than_back_to_back(standard_error, making_s):
    """Each 100 ms wait was followed by 60 ms of decoding (3.75 ms a sample), and the probe after the epoch made
    the same samples for 3.125 ms each back to back: cached, each making takes 50 ms, the worker-bound epoch
    1.02 s. The replay that kept the measured CPU predicted 1.22 s (the bench's storage-bound case: +32 %). A
    probe within its noise of the epoch's cost (± 0.3 ms) changes nothing."""
    batches = [Batch(0.1, 0.0, 0.06, 0.06, 0.01, device_bytes=100000, rchar=100000)] * 20
    timeline = timeline_of(batches, workers=1)
    timeline.after_wait = AfterWait(0.1 / 16, 0.06 / 16, 0.05 / 16, standard_error / 16, 32)
    span = epoch_s(timeline)
    cached = what_ifs(timeline, span, Machine(4, 0.2, 1.2, busy_cpu_s=1.4, span_s=span))["dataset_cached"]
    assert cached.seconds == pytest.approx(20 * making_s + 0.01 + STARTUP + SHUTDOWN, rel=0.03), cached
    assert "the makings' other CPU was 1.20 x their CPU back to back (3.75 against 3.12 ± " in cached.basis
    # a faster disk keeps the waits, shorter, and their cost as measured
    faster = what_ifs(timeline, span, Machine(4, 0.2, 1.2, busy_cpu_s=1.4, span_s=span), storage_bps=[2e6])
    assert faster["storage_bps=2e+06"].seconds == pytest.approx(20 * (0.05 + 0.06) + 0.01 + STARTUP + SHUTDOWN,
                                                                rel=0.03)


def test_a_dataset_already_in_the_page_cache_predicts_no_gain():
    """No byte came from storage, and the reads spent their time on the CPU (here, copying on a contended core):
    caching has nothing left to gain. The old replay removed the reads' whole wall time (1.07 s for 1.47 s)."""
    batches = [Batch(0.02, 0.01, 0.05, 0.05, 0.05, device_bytes=0, rchar=400000)] * 20
    timeline = timeline_of(batches, workers=1)
    span = epoch_s(timeline)
    cached = what_ifs(timeline, span, Machine(1, 1.0, 1.2, busy_cpu_s=2.2, span_s=span))["dataset_cached"]
    assert cached.seconds == span
    assert cached.basis == "already in the page cache: 8 MB read, 0 MB of it from storage; caching gains nothing"


def test_reads_that_waited_with_no_bytes_from_storage_are_not_taken_for_cached():
    """A FUSE or network filesystem: the kernel counts no storage bytes for its reads (measured here on
    bench/slowdisk's view: read_bytes 0 for a 2 MB read that took 42 ms), yet they wait."""
    batches = [Batch(0.1, 0.0, 0.05, 0.05, 0.01, device_bytes=0, rchar=100000)] * 20
    timeline = timeline_of(batches, workers=1)
    span = epoch_s(timeline)
    cached = what_ifs(timeline, span, Machine(4, 0.2, 1.0, busy_cpu_s=1.2, span_s=span))["dataset_cached"]
    assert cached.seconds < 0.6 * span and "device waits" in cached.basis


def test_doubling_the_workers_checks_their_memory_as_caching_does():
    batches = [Batch(0.1, 0.0, 0.05, 0.05, 0.01, 100000, 100000, private_bytes=3 * 2 ** 30)] * 8
    timeline = timeline_of(batches, workers=2)
    span = epoch_s(timeline)
    out = what_ifs(timeline, span, Machine(4, 0.1, 0.4), free_memory_bytes=4 * 2 ** 30)
    for name in ("workers_doubled", "workers_doubled_storage_scales"):
        assert out[name].seconds is None
        assert out[name].basis == "does not fit: 2 more workers of 3.00 GiB each (their private memory), " \
                                  "4.00 GiB free"
    roomy = what_ifs(timeline, span, Machine(4, 0.1, 0.4), free_memory_bytes=7 * 2 ** 30)
    assert roomy["workers_doubled"].seconds is not None


def test_an_old_timeline_file_still_loads_with_what_it_lacks_unknown():
    batches = [Batch(0.1, 0.04, 0.05, 0.05, 0.01, 100000, 100000)] * 4
    data = timeline_of(batches, workers=1).to_dict()
    for name in ("read_cpu_s", "io_read_bytes", "io_rchar", "private_bytes", "run_delay_s"):
        del data["batches"][name]
    del data["machine"]
    old = Timeline.from_dict(json.loads(json.dumps(dict(data, version=1, main_cpu_s=0.5, cpu_count=2))))
    assert (old.machine.cpus, old.machine.main_cpu_s) == (2, 0.5)
    assert all(x != x for x in old.columns["read_cpu_s"]) and len(old.columns["read_cpu_s"]) == 4
    cached = what_ifs(old, 1.0, old.machine)["dataset_cached"]
    assert cached.seconds is not None and "reads' CPU (0 s) kept" in cached.basis  # the whole read waited
    with pytest.raises(ValueError, match="not an edgescope timeline"):
        Timeline.from_dict(dict(data, version=3))


costs = st.floats(0.0, 0.2)


@st.composite
def epochs(draw):
    """A timeline of 1-12 batches with 0-3 workers, and a machine of 1-4 CPUs with other tenants on them."""
    workers = draw(st.integers(0, 3))
    batches = []
    for _ in range(draw(st.integers(1, 12))):
        read, pre, step = draw(costs), draw(costs), draw(st.floats(0.001, 0.2))
        read_cpu = read * draw(st.floats(0.0, 1.0))
        batches.append(Batch(read, read_cpu, pre, pre * draw(st.floats(0.0, 1.0)), step,
                             draw(st.sampled_from([0, 1000, 100000])), draw(st.sampled_from([0, 100000]))))
    timeline = timeline_of(batches, workers)
    span = epoch_s(timeline)
    making = sum(b.read_cpu_s + b.preprocess_cpu_s for b in batches)
    step_cpu = sum(b.step_s for b in batches) * draw(st.floats(0.0, 2.0))  # a GPU's host work .. two threads
    cpus = draw(st.integers(1, 4))
    assume(step_cpu + making <= cpus * span)  # a measured epoch did its CPU work on its CPUs
    others = draw(st.floats(0.0, 1.0)) * (cpus * span - step_cpu - making)
    machine = Machine(cpus, step_cpu + (making if workers == 0 else 0.0), making if workers else float("nan"),
                      busy_cpu_s=draw(st.sampled_from([float("nan"), step_cpu + making + others])), span_s=span,
                      main_sharing=draw(st.sampled_from([float("nan"), 1.0, 1.5, 3.0])))
    return timeline, machine, step_cpu, making


@settings(max_examples=150, deadline=None)
@given(epochs())
def test_no_prediction_falls_below_the_cpu_work_over_the_cores_nor_below_the_compute(epoch):
    """Whatever the epoch: the CPU seconds the run must do cannot take less than they do on all the CPUs, nor
    than on the most of them the prediction says it could have; and the epoch takes at least its compute."""
    timeline, machine, step_cpu, making = epoch
    span = epoch_s(timeline)
    steps = sum(timeline.columns["compute_s"])
    out = what_ifs(timeline, span, machine, storage_bps=[1e6, 1e9], compute_speedup=[2.0, 4.0], compute_s=steps)
    for name, prediction in out.items():
        if prediction.seconds is None:
            continue
        speedup = float(name.split("=")[1]) if name.startswith("compute_speedup") else 1.0
        cpu_work = step_cpu / speedup + making
        shared = re.search(r"on ([0-9.]+) of \d+ CPUs", prediction.basis)  # none where it is the measured epoch
        cores = float(shared.group(1)) if shared else machine.cpus
        assert cores <= machine.cpus and prediction.seconds >= cpu_work / machine.cpus * (1 - 1e-9), (name, prediction)
        assert prediction.seconds >= cpu_work / (cores + 0.005) * (1 - 1e-9), (name, prediction)  # 2 decimals
        assert prediction.seconds >= prediction.compute_seconds * (1 - 1e-9), (name, prediction)


def test_the_machine_sample_counts_this_process_and_the_cpus_busy():
    began = cpu_sample()
    while cpu_sample().own_s - began.own_s < 0.05:  # burns 50 ms of CPU reading /proc
        pass
    ended = cpu_sample()
    machine = Machine.between(began, ended, 1.0)
    assert machine.cpus == len(os.sched_getaffinity(0))
    assert machine.main_cpu_s >= 0.05
    # /proc/stat counts in clock ticks (10 ms): the CPUs were busy at least as long as this process, a tick aside
    assert machine.busy_cpu_s >= machine.main_cpu_s - 0.03
    with open("/proc/self/statm") as f:
        resident = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    assert 0 < private_bytes() < resident  # the libraries are resident and shared


def test_a_real_run_on_one_cpu_over_a_cached_dataset_says_so_and_predicts_its_epoch(tmp_path):
    """edgescope-train on one CPU (its affinity mask), one worker decoding JPEGs, the dataset read into the page
    cache first: the kernel's I/O accounting shows no storage reads, so caching predicts the epoch as measured;
    evicted before every epoch, the reads come from the disk and the replay takes their waits out."""
    data_dir = str(tmp_path / "jpegs")
    write_jpeg_folder(data_dir, images=32, image_size=64, classes=2, seed=3)
    os.sync()

    def train(*flags: str) -> List[dict]:
        results = tmp_path / "results.jsonl"
        if results.exists():
            results.unlink()
        args = small_run_args(data_dir, str(tmp_path)) + ["--dataset", "imagefolder", "--image-size", "32",
                                                           "--workers", "1", "--epochs", "3"] + list(flags)
        cpu = min(os.sched_getaffinity(0))
        done = subprocess.run([sys.executable, "-m", "trainer.cli"] + args, cwd=REPO, env=cli_env(),
                              capture_output=True, text=True, timeout=300,
                              preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
        assert done.returncode == 0, done.stderr
        return [json.loads(line) for line in results.read_text().splitlines()]

    warm(data_dir)
    for record in train()[1:]:
        assert record["prediction_basis"]["dataset_cached"].startswith("already in the page cache"), record
        assert record["predicted_duration_s"]["dataset_cached"] == record["duration_s"]
        assert "of 1 CPUs" in record["prediction_basis"]["workers_doubled"]
    evicted = train("--evict-dataset")[1:]
    if not any(record["io_read_bytes"] for record in evicted):
        pytest.skip("the temporary folder is not on a disk (tmpfs): no storage reads to count")
    for record in evicted:
        assert "device waits" in record["prediction_basis"]["dataset_cached"], record

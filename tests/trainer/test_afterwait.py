"""The probe after each epoch (trainer.afterwait, trainer.data.probe_after_wait): the run's own samples made back
to back, against what the epoch's makings spent a sample, on a maker whose CPU cost is known (it burns CPU
seconds by the thread's own clock, so a loaded machine stretches its wall time, never its CPU seconds) and on a
real JPEG folder."""
import json
import os
import random
import re
import subprocess
import sys
import time
from typing import List

import pytest
import torch

from trainer import afterwait, data
from trainer.afterwait import AfterWait, probe
from trainer.synthetic import write_jpeg_folder
from trainer.timeline import Timeline

from .conftest import REPO, cli_env, small_run_args

COST_S = 0.002


class Maker:
    """Burns ``COST_S`` of CPU a sample, and remembers which it made."""

    def __init__(self) -> None:
        self.made = []  # type: List[int]

    def __call__(self, index: int) -> float:
        self.made.append(index)
        began = time.thread_time()
        while time.thread_time() - began < COST_S:
            pass
        return time.thread_time() - began


def test_the_probe_measures_the_making_back_to_back_against_the_epochs():
    maker = Maker()
    found = probe(maker, list(range(10)), wait_s=0.077, epoch_cpu_s=1.3 * COST_S)
    assert found.samples == 10 and found.wait_s == 0.077
    assert found.back_to_back_cpu_s == pytest.approx(COST_S, rel=0.05)
    assert found.ratio() == pytest.approx(1.3, rel=0.05) and found.slowdown() == found.ratio()
    # each sample made once untimed (the caches warm), then once timed
    assert maker.made == list(range(10)) * 2
    assert re.fullmatch(r"1\.[23][0-9] x their CPU back to back \(2\.6 against 2(\.0[0-9])? ± [0-9.e-]+ ms a sample, "
                        r"10 samples, after waits of 77 ms\)", found.describe()), found.describe()


def test_an_epoch_as_fast_as_back_to_back_changes_nothing():
    found = probe(Maker(), list(range(8)), wait_s=0.01, epoch_cpu_s=COST_S)
    assert found.slowdown() == 1.0 and found.describe().endswith("; within the probe's noise, not used)")


def test_a_cost_within_the_probes_noise_or_below_it_is_not_used():
    assert AfterWait(0.05, 0.012, 0.010, 0.0011, 8).slowdown() == 1.0  # under two standard errors above
    assert AfterWait(0.05, 0.012, 0.010, 0.0009, 8).slowdown() == 1.2
    assert AfterWait(0.05, 0.007, 0.010, 0.0001, 8).slowdown() == 1.0
    assert probe(Maker(), [1], 0.01, COST_S) is None


def test_a_signal_ends_the_probe_before_its_next_sample():
    """SIGTERM's flag set during the probe: the run's exit waits on one making at most (32 photos of 12 MP took
    7 s back to back and twice over on the 2-core VM, longer than a `docker stop`'s 10 s grace on a slower board)."""
    maker = Maker()
    assert probe(maker, list(range(10)), 0.05, COST_S, stopped=lambda: len(maker.made) >= 3) is None
    assert maker.made == [0, 1, 2]


def test_the_probe_travels_with_the_timeline_and_a_bad_one_is_refused():
    timeline = Timeline()
    timeline.after_wait = AfterWait(0.077, 0.0093, 0.0073, 0.0001, 32)
    again = Timeline.from_dict(json.loads(json.dumps(timeline.to_dict())))
    assert again.after_wait == timeline.after_wait
    assert Timeline.from_dict(dict(timeline.to_dict(), after_wait=None)).after_wait is None
    good = timeline.after_wait.to_dict()
    for bad in (dict(good, back_to_back_cpu_s=0), dict(good, epoch_cpu_s=-1), {"wait_s": 0.1}, "1.2",
                dict(good, standard_error_s=float("nan")), dict(good, samples=1),
                dict(good, epoch_cpu_s=1e300, back_to_back_cpu_s=1e-300)):  # "inf x" in the basis
        with pytest.raises(ValueError, match="malformed timeline"):
            Timeline.from_dict(dict(timeline.to_dict(), after_wait=bad))


def test_the_probe_on_a_real_jpeg_folder_leaves_the_training_as_it_was(tmp_path):
    """In the trainer's process, between epochs: the augmentations draw from torch's generator and the step runs
    on torch's threads, so both are as they were after it."""
    write_jpeg_folder(str(tmp_path), images=12, image_size=48, classes=2, seed=1)
    dataset = data.build_dataset("imagefolder", str(tmp_path), image_size=32)
    torch.manual_seed(5)
    random.seed(5)
    rng, py_rng, threads = torch.get_rng_state(), random.getstate(), torch.get_num_threads()
    found = data.probe_after_wait(dataset, wait_s=0.012, epoch_cpu_s=0.01, seed=7)
    assert found is not None and found.samples == 12 and found.wait_s == 0.012 and found.back_to_back_cpu_s > 0
    assert torch.equal(torch.get_rng_state(), rng) and random.getstate() == py_rng
    assert torch.get_num_threads() == threads
    assert data.probe_after_wait(dataset, afterwait.MIN_WAIT_S / 2, 0.01, seed=7) is None  # too short to matter


def test_the_probe_times_no_read(tmp_path, monkeypatch):
    """Through a slow disk every read waits (bench/slowdisk's FUSE view: cached or not), and a decode after it is
    one after a wait: each file is read once, before the probe, and decoded from its bytes."""
    write_jpeg_folder(str(tmp_path), images=6, image_size=48, classes=2, seed=1)
    dataset = data.build_dataset("imagefolder", str(tmp_path), image_size=32)
    reads = []  # type: List[str]
    read_bytes = data.read_bytes

    def slow_read(path: str) -> bytes:
        reads.append(path)
        time.sleep(0.005)
        return read_bytes(path)
    monkeypatch.setattr(data, "read_bytes", slow_read)
    monkeypatch.setattr(data, "timed_read", slow_read)
    found = data.probe_after_wait(dataset, wait_s=0.02, epoch_cpu_s=0.01, seed=7)
    assert found.samples == 6 and sorted(reads) == sorted(path for path, _ in dataset.samples)


def test_a_signal_ends_the_probes_reads_too(tmp_path, monkeypatch):
    """A file's read waits for the device where the dataset left the page cache: a stop reads no more."""
    write_jpeg_folder(str(tmp_path), images=6, image_size=48, classes=2, seed=1)
    dataset = data.build_dataset("imagefolder", str(tmp_path), image_size=32)
    reads = []  # type: List[str]
    read_bytes = data.read_bytes
    monkeypatch.setattr(data, "read_bytes", lambda path: reads.append(path) or read_bytes(path))
    assert data.probe_after_wait(dataset, 0.02, 0.01, seed=7, stopped=lambda: len(reads) >= 2) is None
    assert len(reads) == 2


def test_a_dataset_read_whole_at_start_up_or_a_vanished_file_gets_no_probe(tmp_path):
    write_jpeg_folder(str(tmp_path), images=6, image_size=48, classes=2, seed=1)
    dataset = data.build_dataset("imagefolder", str(tmp_path), image_size=32)
    assert data.probe_after_wait(list(range(10)), 0.02, 0.01, seed=7) is None  # no image folder: nothing to probe
    for path, _ in dataset.samples:
        os.remove(path)
    assert data.probe_after_wait(dataset, 0.02, 0.01, seed=7) is None


def test_the_probes_reads_and_the_start_ups_are_no_epochs_io(tmp_path):
    """Without workers the main process makes the batches and counts its /proc/self/io since its previous batch:
    the probe's 16 file reads after epoch 0 went into epoch 1's I/O (here twice the dataset's bytes), the start-up's
    reads (the model, torch's modules: ~60 MB) into epoch 0's. The probe is forced on (a cached folder's reads
    wait for no device)."""
    folder = str(tmp_path / "images")
    size = write_jpeg_folder(folder, images=16, image_size=48, classes=2, seed=1)
    args = small_run_args(folder, str(tmp_path)) + ["--dataset", "imagefolder", "--image-size", "32",
                                                    "--timeline-dir", str(tmp_path), "--run-id", "forced"]
    forced = "import runpy, sys; from trainer import afterwait; afterwait.MIN_WAIT_S = 0.0; " \
             "runpy.run_module('trainer.cli', run_name='__main__')"
    done = subprocess.run([sys.executable, "-c", forced] + args, cwd=REPO, env=cli_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with open(str(tmp_path / "results.jsonl")) as f:
        records = [json.loads(line) for line in f]
    assert [r["epoch"] for r in records] == [0, 1]
    for epoch in (0, 1):
        with open(str(tmp_path / "forced" / "epoch-{}.json".format(epoch))) as f:
            assert json.load(f)["after_wait"]["samples"] == 16
    if records[0]["io_rchar_bytes"] is None:
        pytest.skip("this kernel keeps no per-process I/O accounting (/proc/self/io)")
    first, second = (record["io_rchar_bytes"] for record in records)
    assert size <= second < 1.5 * size  # its 16 files; /proc reads of its own add a few hundred bytes
    assert size <= first < size + 1e6  # and the first decode's lazy imports (PIL's JPEG plugin: ~270 kB)

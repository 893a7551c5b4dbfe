"""The stall split on real slow storage: a child trainer in a cgroup v1 blkio group throttled to 4 MB/s on the
dataset's disk, its JPEGs evicted from the page cache with ``vmtouch -e``, must put the stall on storage; the
same run with the files cached (``vmtouch -t``) must not.

The dataset lives on an ext4 image on a loop device of its own: only the dataset's reads are throttled, not
torch's libraries (the root disk holds them too), and the cold start is real (a fresh mount, then evicted).
"""
import json
import os
import re
import shutil
import subprocess
import sys
from typing import Dict, Iterator, Tuple

import pytest

from bench import blkio
from trainer import afterwait
from trainer.synthetic import write_jpeg_folder

from .conftest import REPO, cli_env, small_run_args

READ_BPS = 4 * 1024 * 1024  # a slow SD card
IMAGES, BATCH = 48, 8

pytestmark = pytest.mark.skipif(blkio.unavailable() is not None or not shutil.which("vmtouch"),
                                reason=blkio.unavailable() or "needs vmtouch (scripts/install-deps.sh)")


@pytest.fixture
def slow_disk(tmp_path) -> Iterator[Tuple[str, str]]:
    """(a folder on a fresh ext4 loop device, the blkio group throttled to READ_BPS on it); both removed after."""
    with blkio.loop_disk(str(tmp_path), 64 * 1024 * 1024) as mount_point:
        with blkio.throttled_group(mount_point, READ_BPS, "edgescope-test") as group:
            yield mount_point, group


def vmtouch(flag: str, folder: str) -> str:
    return subprocess.run(["vmtouch", flag, folder], check=True, capture_output=True, text=True).stdout


def train_in(group: str, data_dir: str, tmp: str) -> Dict[str, float]:
    """One epoch of a real edgescope-train, started inside ``group``; its record. No workers: on a small shared
    machine workers would compete with the training step for the CPUs and inflate the preprocessing time."""
    results = os.path.join(tmp, "results.jsonl")
    if os.path.exists(results):
        os.remove(results)
    args = small_run_args(data_dir, tmp)
    args[args.index("--batch-size") + 1] = str(BATCH)
    args[args.index("--epochs") + 1] = "1"
    args[args.index("--max-batches") + 1] = str(IMAGES // BATCH)
    done = subprocess.run([sys.executable, "-m", "trainer.cli"] + args + ["--dataset", "imagefolder",
                                                                         "--image-size", "32"],
                          cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=600, preexec_fn=blkio.joiner(group))
    assert done.returncode == 0, done.stderr
    with open(results) as f:
        (record,) = [json.loads(line) for line in f]
    print(done.stdout.splitlines()[1])
    return record


def storage_share(record: Dict[str, float]) -> float:
    assert record["fetch_stall_storage_s"] + record["fetch_stall_preprocess_s"] == pytest.approx(
        record["fetch_stall_s"])
    return record["fetch_stall_storage_s"] / record["fetch_stall_s"]


def test_a_cold_dataset_on_a_4_mb_per_s_disk_stalls_on_storage_and_the_cached_one_does_not(slow_disk, tmp_path):
    mount_point, group = slow_disk
    data_dir = os.path.join(mount_point, "jpegs")
    data_bytes = write_jpeg_folder(data_dir, images=IMAGES, image_size=384, classes=3, seed=4, quality=98)
    assert 100e3 <= data_bytes / IMAGES <= 200e3  # JPEGs of a real photo's size
    os.sync()  # vmtouch cannot evict dirty pages
    assert "Resident Pages: 0/" in vmtouch("-e", data_dir) + vmtouch("-v", data_dir)

    cold = train_in(group, data_dir, str(tmp_path))
    assert "Resident Pages: 0/" not in vmtouch("-v", data_dir)  # the run read it into the cache...
    vmtouch("-t", data_dir)  # ...all of it now
    cached = train_in(group, data_dir, str(tmp_path))

    print("cold: storage share {:.3f}, read {:.3f} s, preprocess {:.3f} s, stall {:.3f} s; cached: storage share "
          "{:.3f}, read {:.4f} s, preprocess {:.3f} s, stall {:.3f} s; {:.0f} KB per JPEG".format(
              storage_share(cold), cold["read_s"], cold["preprocess_s"], cold["fetch_stall_s"],
              storage_share(cached), cached["read_s"], cached["preprocess_s"], cached["fetch_stall_s"],
              data_bytes / IMAGES / 1e3))
    # the bytes came through the throttle; blk-throttle lets a burst of one 100 ms slice (400 KB) through at once
    # after an idle spell (here each training step), so the reads' wall time is less than bytes / 4 MB/s
    assert cold["read_s"] >= 0.5 * data_bytes / READ_BPS
    assert storage_share(cold) > 0.5
    assert cached["read_s"] < 0.1 * cold["read_s"]
    assert storage_share(cached) < 0.5 * storage_share(cold)
    # after the epoch the probe made the cold run's own JPEGs back to back (trainer.afterwait)
    assert re.search(r"the makings' other CPU was [0-9.]+ x their CPU back to back \([0-9.]+ against [0-9.]+ ± "
                     r"[0-9.e-]+ ms a sample, {} samples, after waits of [0-9]+ ms".format(min(afterwait.SAMPLES, IMAGES)),
                     cold["prediction_basis"]["dataset_cached"]), cold["prediction_basis"]

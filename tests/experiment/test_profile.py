"""--profile: the cold pass's dataset is out of the page cache and the cached
pass's in it when the trainer starts (vmtouch as the yardstick), each run is
trained once per pass under its own id and labels, and both reach the report."""
import os
import re
import subprocess
import sys

from experiment.profile import evict, warm
from tests.experiment.conftest import FAKE_TRAINER

FILES = 4
SIZE = 1 << 20


def resident_percent(path) -> float:
    """vmtouch's count of the tree's pages in the page cache, in percent."""
    out = subprocess.run(["vmtouch", str(path)], capture_output=True, text=True, check=True, timeout=60).stdout
    return float(re.search(r"Resident Pages: .* ([0-9.]+)%", out).group(1))


def dataset(folder):
    folder.mkdir(exist_ok=True)
    for i in range(FILES):
        (folder / "part{}.bin".format(i)).write_bytes(os.urandom(SIZE))
    return folder


def test_evict_and_warm_move_the_dataset_out_of_and_into_the_page_cache(tmp_path):
    data = dataset(tmp_path / "data")
    assert evict(str(data)) == FILES  # freshly written (dirty) pages too
    assert resident_percent(data) == 0
    assert warm(str(data)) == FILES
    assert resident_percent(data) == 100
    assert evict(str(data)) == FILES
    assert resident_percent(data) == 0


def test_profile_trains_each_run_synthetic_then_cold_then_cached(bench):
    data = dataset(bench.tmp / "ssd")
    # vmtouch's view of the dataset as each trainer starts, then the fake trainer
    seen = bench.tmp / "resident.txt"
    probe = 'vmtouch "$0" | grep Resident >> {}; exec {} {} "$@"'.format(seen, sys.executable, FAKE_TRAINER)
    plan = bench.plan(sweep__power_mode=[None], report={"prometheus": "http://127.0.0.1:9"},
                      trainer__command=["sh", "-c", probe, str(data)])
    dry = bench.run(plan, "--profile", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "3 runs" in dry.stdout and "synthetic input, dataset evicted (cold) or read in (cached)" in dry.stdout
    shown = [line for line in dry.stdout.splitlines() if "--run-id" in line]  # each pass's command, as it runs
    assert [("--synthetic-input" in c, "--evict-dataset" in c) for c in shown] == [(True, False), (False, True),
                                                                                  (False, False)]
    result = bench.run(plan, "--profile", "--no-report")
    assert result.returncode == 0, result.stderr
    starts = bench.trainer_starts()
    ids = [dict(zip(s["argv"][::2], s["argv"][1::2]))["--run-id"] for s in starts]
    assert ids == ["t-vgg11-b16-w4-pf2-pm-asis-ssd-nx-test-" + name for name in ("synthetic", "cold", "cached")]
    assert [(s["labels"]["profile_pass"], s["labels"].get("page_cache")) for s in starts] == \
        [("synthetic", None), ("cold", "evicted"), ("cached", "warmed")]
    assert ["--evict-dataset" in s["argv"] for s in starts] == [False, True, False]  # cold in every epoch
    assert ["--synthetic-input" in s["argv"] for s in starts] == [True, False, False]
    assert [line.split()[-1] for line in seen.read_text().splitlines()][1:] == ["0%", "100%"]
    assert [e["event"] for e in bench.journal()] == ["started", "completed"] * 3


def test_the_cold_pass_has_the_trainer_evict_before_every_epoch():
    """The report averages epochs after the first: a cold pass evicted once would average cached epochs."""
    from experiment.profile import trainer_flags
    assert trainer_flags("cold") == ["--evict-dataset"] and trainer_flags("cached") == [] == trainer_flags(None)
    assert trainer_flags("synthetic") == ["--synthetic-input"]


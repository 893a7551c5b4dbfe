"""What both callbacks' tests check: the served exposition is edgescope-train's, with one histogram
observation per optimizer step, one set of epoch gauges per epoch, the framework's run_info, and
promtool accepts it; and edgescope-report reads such a run back from a real Prometheus."""
import contextlib
import io
import json
import shutil
import subprocess
import sys
import time
from typing import Any, Dict, List

import requests
import torch
from prometheus_client.parser import text_string_to_metric_families
from torch.utils.data import Dataset

from report.cli import main as report_main
from tests.processes import child_env
from tests.stack.harness import Prometheus, Target

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
HISTOGRAMS = ("edgescope_train_fetch_stall_seconds", "edgescope_train_compute_seconds",
              "edgescope_train_batch_seconds")


def samples_of(text: str) -> Dict[str, List]:
    """Sample name -> [(labels, value)] of an exposition."""
    found = {}  # type: Dict[str, List]
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def python_prints(code: str) -> str:
    """What ``python -c code`` prints in a fresh interpreter (this worktree first on its path)."""
    out = subprocess.run([sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def scrape(port: int) -> str:
    response = requests.get("http://127.0.0.1:{}/metrics".format(port), timeout=10)
    assert response.status_code == 200
    return response.text


def check_exposition(text: str, run_id: str, steps: int, samples_per_epoch: List[int],
                     run_info: Dict[str, str]) -> Dict[str, List]:
    """Asserts the contract and returns the samples for further checks."""
    checked = subprocess.run([PROMTOOL, "check", "metrics"], input=text, text=True, capture_output=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    found = samples_of(text)
    for name in HISTOGRAMS:
        assert found[name + "_count"] == [({"run_id": run_id}, float(steps))], name
    epochs = [str(e) for e in range(len(samples_per_epoch))]
    by_epoch = {name: {labels["epoch"]: value for labels, value in found[name]}
                for name in ("edgescope_train_epoch_fetch_stall_seconds", "edgescope_train_epoch_compute_seconds",
                             "edgescope_train_epoch_duration_seconds", "edgescope_train_epoch_samples")}
    for name, values in by_epoch.items():
        assert sorted(values) == epochs, name
    for epoch, samples in zip(epochs, samples_per_epoch):
        assert by_epoch["edgescope_train_epoch_samples"][epoch] == samples
        stall = by_epoch["edgescope_train_epoch_fetch_stall_seconds"][epoch]
        compute = by_epoch["edgescope_train_epoch_compute_seconds"][epoch]
        assert stall > 0 and compute > 0
        assert stall + compute <= by_epoch["edgescope_train_epoch_duration_seconds"][epoch]
    # the steps' sums are the epochs' sums: no step lost or counted twice
    for histogram, epoch_gauge in (("edgescope_train_fetch_stall_seconds", "edgescope_train_epoch_fetch_stall_seconds"),
                                   ("edgescope_train_compute_seconds", "edgescope_train_epoch_compute_seconds")):
        assert abs(found[histogram + "_sum"][0][1] - sum(by_epoch[epoch_gauge].values())) < 1e-6
    assert found["edgescope_train_samples_total"] == [({"run_id": run_id}, float(sum(samples_per_epoch)))]
    assert found["edgescope_train_running"] == [({"run_id": run_id}, 0.0)]
    [(info, value)] = found["edgescope_train_run_info"]
    assert value == 1.0
    assert {key: info.get(key) for key in run_info} == run_info
    return found


def check_report(tmp_path, port: int, run_id: str, epochs: int) -> None:
    """A real Prometheus scrapes the (still served) endpoint; edgescope-report --format json reads the run's
    epochs back with the endpoint's own stall and compute, on the target's device."""
    served = samples_of(scrape(port))
    with Prometheus(tmp_path, scrape_interval="1s") as prom:
        prom.set_targets([Target("cb-1", "nano", "sd", trainer_port=port)])
        query = "count(edgescope_train_epoch_end_timestamp_seconds{{run_id='{}'}})".format(run_id)
        deadline = time.time() + 60
        while True:
            result = requests.get(prom.url + "/api/v1/query", params={"query": query}, timeout=5).json()
            if result["data"]["result"] and float(result["data"]["result"][0]["value"][1]) == epochs:
                break
            assert time.time() < deadline, "Prometheus never scraped the callback's endpoint"
            time.sleep(0.5)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert report_main(["--prometheus", prom.url, "--run", run_id, "--since", "10m", "--format", "json"]) == 0
    report = json.loads(out.getvalue())
    assert [r["epoch"] for r in report["epochs"]] == list(range(epochs))
    for record in report["epochs"]:
        assert record["device"] == "cb-1"
        for key in ("fetch_stall_seconds", "compute_seconds"):
            [(_, value)] = [(labels, value) for labels, value in served["edgescope_train_epoch_" + key]
                            if labels["epoch"] == str(record["epoch"])]
            assert abs(record[key] - value) < 1e-9, key


FETCH_SLEEP_S = 0.004  # per sample: a loader that makes every batch wait
STEP_SLEEP_S = 0.01  # per training step (micro-batch)


class SlowDataset(Dataset):
    """20 samples of 4 features, two classes; each read sleeps, so the fetch stall is at least
    FETCH_SLEEP_S per sample whatever the machine's speed."""

    def __init__(self, as_dict: bool = False) -> None:
        generator = torch.Generator().manual_seed(0)
        self.features = torch.randn(20, 4, generator=generator)
        self.targets = torch.arange(20) % 2
        self.as_dict = as_dict

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> Any:
        time.sleep(FETCH_SLEEP_S)
        if self.as_dict:
            return {"x": self.features[index], "labels": self.targets[index]}
        return self.features[index], self.targets[index]


def check_lower_bounds(found: Dict[str, List], micro_batches_per_epoch: int) -> None:
    """Each epoch's stall holds at least the loader's sleeps and its compute the steps' sleeps."""
    for labels, stall in found["edgescope_train_epoch_fetch_stall_seconds"]:
        assert stall >= 20 * FETCH_SLEEP_S, labels
    for labels, compute in found["edgescope_train_epoch_compute_seconds"]:
        assert compute >= micro_batches_per_epoch * STEP_SLEEP_S, labels

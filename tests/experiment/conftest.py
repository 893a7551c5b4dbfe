"""Fixtures for the runner's tests: plan files pointing at the fake trainer,
and the CLI run as a child process with (or without) the fake jtop."""
import json
import os
import signal
import subprocess
import sys

import pytest
import yaml

from tests.report.conftest import bench_prometheus  # noqa: F401  (the real Prometheus, for the report step)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FAKE_JTOP = os.path.join(HERE, "fake_jtop")
FAKE_TRAINER = os.path.join(HERE, "fake_trainer.py")


def as_in_a_terminal() -> None:
    """A runner child's preexec_fn: SIGINT at its default, as for a terminal's foreground job, so that the tests'
    Ctrl-C reaches it. Under a shell's background job (`nohup pytest ... &`) SIGINT starts ignored, the child
    inherits that and Python keeps it: the runner never saw the Ctrl-C and the test timed out after 60 s."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Bench:
    """A tmp dir with data dirs, a plan writer, the CLI and the shared log."""

    def __init__(self, tmp_path):
        self.tmp = tmp_path
        self.log = tmp_path / "events.jsonl"  # fake jtop controls and fake trainer starts, in order
        self.out = tmp_path / "out"
        for name in ("sd", "ssd"):
            (tmp_path / name).mkdir()

    def plan(self, **changes) -> str:
        plan = {
            "name": "t",
            "trainer": {"epochs": 3, "command": [sys.executable, FAKE_TRAINER], "device_name": "nx-test",
                        "metrics_port": 19946},
            "sweep": {"model": ["vgg11"], "batch_size": [16], "workers": [4], "prefetch_factor": [2],
                      "power_mode": ["MODE_20W_6CORE", 3],
                      "dataset_location": {"ssd": str(self.tmp / "ssd")}},
            "controls": {"jetson_clocks": True, "fan_max": True, "drop_caches": False},
            "output": {"dir": str(self.out)},
        }
        for dotted, value in changes.items():
            node = plan
            keys = dotted.split("__")
            for k in keys[:-1]:
                node = node.setdefault(k, {})
            node[keys[-1]] = value
        path = self.tmp / "plan.yaml"
        path.write_text(yaml.safe_dump(plan))
        return str(path)

    def env(self, jetson: bool = True, **extra) -> dict:
        paths = ([FAKE_JTOP] if jetson else []) + [ROOT]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), FAKE_JTOP_LOG=str(self.log),
                   FAKE_TRAINER_LOG=str(self.log))
        env.update(extra)
        return env

    def cli_args(self, *args):
        return [sys.executable, "-m", "experiment.cli"] + list(args)

    def run(self, *args, jetson: bool = True, **extra) -> subprocess.CompletedProcess:
        return subprocess.run(self.cli_args(*args), env=self.env(jetson, **extra), cwd=str(self.tmp),
                              capture_output=True, text=True, timeout=120)

    def events(self):
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def trainer_starts(self):
        return [e for e in self.events() if "argv" in e]

    def journal(self):
        path = self.out / "state.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def bench(tmp_path):
    return Bench(tmp_path)

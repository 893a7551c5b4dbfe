"""Real fleet processes on loopback, for tests/fleet and bench/fleet_bench.py.

Debian's binaries, each on a free port with its data in a given directory:
`victoria-metrics` (central store), `vmalert` (the project's rules against it),
`prometheus --enable-feature=agent` (with the shipped prometheus/agent.yml,
changing only targets, intervals and the remote-write URL) and the fleet
simulator (`python3 -m fleet.cli`). Every process is stopped by `stop()`;
`cpu_seconds()` / `rss_bytes()` read /proc for the benchmark.
"""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import requests
import yaml

from tests.processes import child_env, free_port, log_tail, stop_process, wait_http_ok

REPO = Path(__file__).resolve().parents[2]
AGENT_CONFIG = REPO / "prometheus" / "agent.yml"
RULES = REPO / "prometheus" / "rules"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def binary(name: str) -> str:
    return shutil.which(name) or "/usr/bin/" + name


class Service:
    """A child process with a log file, ready when `ready_path` answers 200."""

    def __init__(self, name: str, argv: List[str], workdir: Path, port: int, ready_path: str,
                 env: Optional[Dict[str, str]] = None) -> None:
        self.name, self.argv, self.workdir, self.port = name, argv, Path(workdir), port
        self.ready_path = ready_path
        self.env = env
        self.log_path = self.workdir / (name + ".log")
        self.process = None  # type: Optional[subprocess.Popen]

    @property
    def url(self) -> str:
        return "http://127.0.0.1:{}".format(self.port)

    def start(self, timeout: float = 60.0) -> "Service":
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(str(self.log_path), "ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=self.env, cwd=str(self.workdir))
        if wait_http_ok(self.process, self.url + self.ready_path, timeout):
            return self
        self.stop()
        raise RuntimeError("{} did not become ready:\n{}".format(self.name, self.log_tail()))

    def stop(self) -> None:
        """SIGTERM (a clean shutdown: VictoriaMetrics flushes what it acknowledged), then SIGKILL."""
        if self.process is not None:
            stop_process(self.process, timeout=20.0)
        self.process = None

    def log_tail(self, lines: int = 25) -> str:
        return log_tail(self.log_path, lines)

    def cpu_seconds(self) -> float:
        """user + system CPU of the process so far."""
        assert self.process is not None
        with open("/proc/{}/stat".format(self.process.pid)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def rss_bytes(self) -> int:
        assert self.process is not None
        with open("/proc/{}/status".format(self.process.pid)) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0


def victoria_metrics(workdir: Path, port: Optional[int] = None) -> Service:
    """Single-node VictoriaMetrics. The rollup cache is off because the tests
    read back samples that arrive late (WAL replay after an outage); the
    latency offset is short so that just-written samples are visible."""
    port = port or free_port()
    return Service("victoria-metrics", [
        binary("victoria-metrics"), "-storageDataPath={}".format(workdir / "vm-data"),
        "-httpListenAddr=127.0.0.1:{}".format(port), "-retentionPeriod=1", "-search.disableCache",
        "-search.latencyOffset=1s", "-loggerLevel=WARN"], workdir, port, "/health")


def vmalert(workdir: Path, store_url: str, interval: str = "1s", extra_rules: Sequence[str] = (),
            alertmanager_url: Optional[str] = None) -> Service:
    """vmalert running the project's rule files (and `extra_rules`) against the store,
    writing recording-rule results and alert state back into it, alerts to Alertmanager
    (with none given, to a closed port: evaluation does not need one)."""
    port = free_port()
    rules = [str(RULES / "*.yml")] + list(extra_rules)
    notifier = alertmanager_url or "http://127.0.0.1:{}".format(free_port())
    return Service("vmalert", [binary("vmalert")] + ["-rule=" + r for r in rules] + [
        "-datasource.url=" + store_url, "-remoteWrite.url=" + store_url, "-remoteRead.url=" + store_url,
        "-notifier.url=" + notifier, "-evaluationInterval=" + interval, "-httpListenAddr=127.0.0.1:{}".format(port),
        "-loggerLevel=ERROR"], workdir, port, "/health")


def agent_config(remote_write_url: str, scrape_interval: str, jobs: Dict[str, Any]) -> Dict[str, Any]:
    """The shipped prometheus/agent.yml with its remote-write URL and scrape
    interval replaced and each job's targets given by `jobs` (job name ->
    static target "host:port", or a full scrape_config dict)."""
    config = yaml.safe_load(AGENT_CONFIG.read_text())
    config["global"]["scrape_interval"] = scrape_interval
    config["global"]["scrape_timeout"] = scrape_interval
    config["remote_write"][0]["url"] = remote_write_url
    scrape = []
    for job in config["scrape_configs"]:
        target = jobs[job["job_name"]]
        if isinstance(target, dict):
            scrape.append(dict(target, job_name=job["job_name"]))
        else:
            scrape.append(dict(job, static_configs=[{"targets": [target]}]))
    config["scrape_configs"] = scrape
    return config


def prometheus_agent(workdir: Path, config: Dict[str, Any], identity: Optional[Dict[str, str]] = None) -> Service:
    """`prometheus --enable-feature=agent,expand-external-labels` as the unit starts it;
    `identity` (device, device_type, storage) goes in through the environment."""
    env = dict(os.environ)
    if identity is None:  # a site agent: identity comes from each target's labels
        config["global"].pop("external_labels", None)
    else:
        env.update({"EDGESCOPE_DEVICE": identity["device"], "EDGESCOPE_DEVICE_TYPE": identity["device_type"],
                    "EDGESCOPE_STORAGE": identity["storage"]})
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "agent.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    return Service("agent", [
        binary("prometheus"), "--enable-feature=agent,expand-external-labels", "--config.file={}".format(path),
        "--storage.agent.path={}".format(workdir / "wal"), "--storage.agent.wal-compression",
        "--web.listen-address=127.0.0.1:{}".format(port),
        "--log.level=warn"], workdir, port, "/-/ready", env)


class Simulator:
    """`python3 -m fleet.cli` on free loopback ports; `targets` is what it wrote."""

    def __init__(self, workdir: Path, devices: int, *flags: str) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.targets_file = workdir / "sim-targets.yml"
        self.log_path = workdir / "sim.log"
        env = child_env()
        with open(str(self.log_path), "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fleet.cli", "--devices", str(devices), "--base-port", "0",
                 "--targets-file", str(self.targets_file)] + list(flags),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=str(workdir))
        deadline = time.monotonic() + 60
        while not self.targets_file.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("fleet simulator did not start:\n" + self.log_path.read_text())
            time.sleep(0.1)
        self.targets = yaml.safe_load(self.targets_file.read_text())  # type: List[Dict[str, Any]]

    def ports(self, index: int) -> Tuple[int, int]:
        labels = self.targets[index]["labels"]
        return int(labels["__exporter_port__"]), int(labels["__trainer_port__"])

    def identity(self, index: int) -> Dict[str, str]:
        return {k: v for k, v in self.targets[index]["labels"].items() if not k.startswith("__")}

    def stop(self) -> None:
        stop_process(self.process, timeout=20.0)

    def cpu_seconds(self) -> float:
        with open("/proc/{}/stat".format(self.process.pid)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def query(url: str, expr: str, at: Optional[float] = None) -> List[Dict[str, Any]]:
    """Instant query against any Prometheus-compatible API."""
    params = {"query": expr}  # type: Dict[str, Any]
    if at is not None:
        params["time"] = repr(at)
    body = requests.get(url + "/api/v1/query", params=params, timeout=30).json()
    if body.get("status") != "success":
        raise RuntimeError("{}: {}".format(expr, body.get("error")))
    return body["data"]["result"]


def raw_samples(url: str, selector: str, start: float, end: float) -> Dict[str, List[float]]:
    """Timestamps of the stored samples of every series of `selector` in [start, end]."""
    window = "{}s".format(int(end - start) + 1)
    out = {}
    for item in query(url, "{}[{}]".format(selector, window), end):
        key = ",".join("{}={}".format(k, v) for k, v in sorted(item["metric"].items()))
        out[key] = [float(t) for t, _ in item["values"] if float(t) >= start]
    return out


def metric_names(url: str, selector: str, start: float, end: float) -> Set[str]:
    """The metric names of the series of `selector` with samples in [start, end] (VictoriaMetrics answers to the
    day: every name it indexed that day, so its stores here, begun by each test, answer since they began)."""
    params = {"match[]": selector, "start": repr(start), "end": repr(end)}
    body = requests.get(url + "/api/v1/label/__name__/values", params=params, timeout=30).json()
    if body.get("status") != "success":
        raise RuntimeError("{}: {}".format(selector, body.get("error")))
    return set(body["data"])


def wait_until(check, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last = None  # type: Any
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (requests.RequestException, RuntimeError) as e:
            last = e
        time.sleep(interval)
    raise AssertionError("timed out after {:.0f} s waiting for {} (last: {!r})".format(timeout, what, last))

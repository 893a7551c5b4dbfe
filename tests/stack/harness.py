"""A real Prometheus for tests, running the project's own configuration.

Starts Debian's `/usr/bin/prometheus` (or $EDGESCOPE_PROMETHEUS) on a free
loopback port with prometheus/prometheus.yml and prometheus/rules/*.yml,
changing only what a test must change:

* the file_sd targets: a temp directory of target files naming loopback
  ports (written by `set_targets`, re-read by Prometheus on change);
* a job with static targets (the power-mode textfile's node_exporter) is
  pointed at the address a test gives it (`static_targets`), else left out;
* the scrape and evaluation intervals (1 s by default, so rules work
  within seconds);
* storage in the given directory; no Alertmanager unless one is named
  (`Alertmanager` below runs the project's alertmanager.yml with its webhook
  pointed at a `WebhookReceiver`).

Everything else (jobs, relabelling, rules, alerts) is the production file,
so a test through this harness tests the real configuration.

    with Prometheus(tmp_path) as prom:
        prom.set_targets([Target("nano-01", exporter_port=port)])
        series = prom.wait_for('device:edgescope_board_energy_joules:rate1m')

Any component's tests can use it (`from tests.stack.harness import ...`);
`prometheus_server` in tests/stack/conftest.py wraps it as a pytest fixture.
"""
import json
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, TypeVar

import requests
import yaml

from tests.processes import free_port, log_tail, stop_process, wait_http_ok

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "prometheus" / "prometheus.yml"
COMPOSE = REPO / "docker-compose.yml"
RULES_DIR = REPO / "prometheus" / "rules"
ALERTMANAGER_CONFIG = REPO / "alertmanager" / "alertmanager.yml"


def prometheus_binary() -> str:
    """The Prometheus server to run: $EDGESCOPE_PROMETHEUS, else Debian's."""
    return os.environ.get("EDGESCOPE_PROMETHEUS") or shutil.which("prometheus") or "/usr/bin/prometheus"


class Target:
    """One board as a file_sd entry: its identity labels and loopback ports.

    A port of None leaves the production default (9945 / 9946) in place,
    which is how a real board's entry looks.
    """

    def __init__(self, device: str, device_type: str = "nano", storage: str = "sd",
                 exporter_port: Optional[int] = None, trainer_port: Optional[int] = None,
                 host: str = "127.0.0.1") -> None:
        self.device = device
        self.device_type = device_type
        self.storage = storage
        self.exporter_port = exporter_port
        self.trainer_port = trainer_port
        self.host = host

    def file_sd_entry(self) -> Dict[str, Any]:
        labels = {"device": self.device, "device_type": self.device_type, "storage": self.storage}
        if self.exporter_port is not None:
            labels["__exporter_port__"] = str(self.exporter_port)
        if self.trainer_port is not None:
            labels["__trainer_port__"] = str(self.trainer_port)
        return {"targets": [self.host], "labels": labels}


def render_config(workdir: Path, scrape_interval: str = "1s", evaluation_interval: str = "1s",
                  alertmanager: Optional[str] = None, static_targets: Optional[Dict[str, str]] = None) -> Path:
    """Writes workdir/prometheus.yml: the project's config, pointed at workdir/targets.

    Returns the path. Target files go to workdir/targets/ (see set_targets). A job with static targets
    scrapes ``static_targets[job name]`` ("host:port"), or is left out where that has none.
    """
    config = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    config["global"]["scrape_interval"] = scrape_interval
    config["global"]["scrape_timeout"] = scrape_interval
    config["global"]["evaluation_interval"] = evaluation_interval
    config["rule_files"] = [str(RULES_DIR / "*.yml")]
    targets_dir = workdir / "targets"
    targets_dir.mkdir(parents=True, exist_ok=True)
    static_targets = static_targets or {}
    config["scrape_configs"] = [job for job in config["scrape_configs"]
                                if "static_configs" not in job or job["job_name"] in static_targets]
    for job in config["scrape_configs"]:
        for sd in job.get("file_sd_configs", []):
            sd["files"] = [str(targets_dir / Path(f).name) for f in sd["files"]]
            sd["refresh_interval"] = "1s"
        if "static_configs" in job:
            job["static_configs"] = [{"targets": [static_targets[job["job_name"]]]}]
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    else:
        config.pop("alerting", None)
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


class PrometheusError(RuntimeError):
    """Prometheus or Alertmanager did not start, or an API call failed."""


ServerT = TypeVar("ServerT", bound="_Server")


class _Server:
    """A loopback server process started on a free port and waited for until ready."""

    name = "server"

    def __init__(self, workdir: Path, startup_timeout: float) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / (self.name + ".log")
        self.startup_timeout = startup_timeout
        self.port = 0
        self.process = None  # type: Optional[subprocess.Popen]

    @property
    def url(self) -> str:
        return "http://127.0.0.1:%d" % self.port

    def command(self) -> List[str]:
        raise NotImplementedError

    def start(self: ServerT) -> ServerT:
        """Starts the server and waits until it is ready. Retries if the port got taken."""
        for _ in range(3):
            self.port = free_port()
            log = self.log_path.open("ab")
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
            log.close()
            if self._wait_ready():
                return self
            self.stop()
            if "address already in use" not in self.log_tail():
                break
        raise PrometheusError("%s did not become ready; log %s:\n%s"
                              % (self.name, self.log_path, self.log_tail()))

    ready_path = "/-/ready"

    def _wait_ready(self) -> bool:
        assert self.process is not None
        return wait_http_ok(self.process, self.url + self.ready_path, self.startup_timeout)

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process(self.process)
        self.process = None

    def __enter__(self: ServerT) -> ServerT:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)


class Prometheus(_Server):
    """A Prometheus process with the project's config, and its HTTP API."""

    name = "prometheus"

    def __init__(self, workdir: Path, scrape_interval: str = "1s", evaluation_interval: str = "1s",
                 alertmanager: Optional[str] = None, startup_timeout: float = 30.0,
                 static_targets: Optional[Dict[str, str]] = None) -> None:
        super().__init__(workdir, startup_timeout)
        self.config_path = render_config(self.workdir, scrape_interval, evaluation_interval,
                                         alertmanager, static_targets)
        self.targets_dir = self.workdir / "targets"

    def command(self) -> List[str]:
        return [prometheus_binary(), "--config.file=%s" % self.config_path,
                "--storage.tsdb.path=%s" % (self.workdir / "data"),
                "--web.listen-address=127.0.0.1:%d" % self.port]

    # -- targets -----------------------------------------------------------
    def set_targets(self, targets: Sequence[Target], name: str = "test.yml") -> None:
        """Writes one file_sd file (atomically); Prometheus picks it up within ~1 s."""
        path = self.targets_dir / name
        tmp = path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump([t.file_sd_entry() for t in targets]), encoding="utf-8")
        tmp.replace(path)

    # -- HTTP API ----------------------------------------------------------
    def api(self, path: str, **params: Any) -> Any:
        """GET /api/v1/<path>; returns `data`, raises PrometheusError on an API error."""
        resp = requests.get("%s/api/v1/%s" % (self.url, path), params=params, timeout=30)
        body = resp.json()
        if body.get("status") != "success":
            raise PrometheusError("%s %s: %s: %s" % (path, params, body.get("errorType"),
                                                     body.get("error")))
        return body["data"]

    def query(self, expr: str, at: Optional[float] = None) -> List[Dict[str, Any]]:
        """Instant query; a list of {"metric": {...}, "value": [t, "v"]}."""
        params = {"query": expr}  # type: Dict[str, Any]
        if at is not None:
            params["time"] = at
        data = self.api("query", **params)
        return data["result"] if isinstance(data["result"], list) else [data["result"]]

    def query_range(self, expr: str, start: float, end: float, step: float) -> List[Dict[str, Any]]:
        return self.api("query_range", query=expr, start=start, end=end, step=step)["result"]

    def values(self, expr: str) -> Dict[str, float]:
        """Instant query as {"label=value,...": float}, for readable assertions."""
        return {",".join("%s=%s" % kv for kv in sorted(r["metric"].items())): float(r["value"][1])
                for r in self.query(expr)}

    def active_targets(self) -> List[Dict[str, Any]]:
        return self.api("targets", state="active")["activeTargets"]

    def alerts(self) -> List[Dict[str, Any]]:
        return self.api("alerts")["alerts"]

    def rule_groups(self) -> List[Dict[str, Any]]:
        return self.api("rules")["groups"]

    def wait_until(self, check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.5,
                   what: str = "condition") -> Any:
        """Polls check() until it returns something truthy; returns it or raises with context."""
        deadline = time.monotonic() + timeout
        last_error = None  # type: Optional[Exception]
        while time.monotonic() < deadline:
            try:
                result = check()
                if result:
                    return result
            except (PrometheusError, requests.RequestException) as err:
                last_error = err
            time.sleep(interval)
        raise AssertionError("timed out after %.0f s waiting for %s (last error: %s)\n"
                             "prometheus log tail:\n%s" % (timeout, what, last_error, self.log_tail()))

    def wait_for(self, expr: str, timeout: float = 30.0) -> List[Dict[str, Any]]:
        """Waits until an instant query returns at least one series; returns them."""
        return self.wait_until(lambda: self.query(expr), timeout, what="data from %r" % expr)

    def wait_for_alert(self, name: str, state: str = "firing", timeout: float = 60.0) -> Dict[str, Any]:
        """Waits until alert `name` is in `state` (pending/firing); returns the alert."""
        def check() -> Optional[Dict[str, Any]]:
            for alert in self.alerts():
                if alert["labels"].get("alertname") == name and alert["state"] == state:
                    return alert
            return None
        return self.wait_until(check, timeout, what="alert %s %s" % (name, state))


class ExpositionServer:
    """Serves `render()`'s Prometheus text on http://127.0.0.1:<port>/metrics.

    For tests of the configuration itself (relabelling, rules on known
    values) where the real exporter or trainer is not the subject.
    """

    def __init__(self, render: Callable[[], str]) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = outer.render().encode("utf-8")
                self.send_response(200 if self.path.startswith("/metrics") else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.render = render
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "ExpositionServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def alertmanager_binary() -> str:
    """Debian names it prometheus-alertmanager; upstream alertmanager. $EDGESCOPE_ALERTMANAGER wins."""
    return (os.environ.get("EDGESCOPE_ALERTMANAGER") or shutil.which("prometheus-alertmanager")
            or shutil.which("alertmanager") or "/usr/bin/prometheus-alertmanager")


class Alertmanager(_Server):
    """Alertmanager with the project's alertmanager.yml, its webhook pointed at `webhook_url`
    and its grouping waits cut to 1 s (the routes, receivers and inhibitions stay as they are)."""

    name = "alertmanager"

    def __init__(self, workdir: Path, webhook_url: str, startup_timeout: float = 30.0) -> None:
        super().__init__(workdir, startup_timeout)
        config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
        config["route"].update(group_wait="1s", group_interval="1s")
        for receiver in config["receivers"]:
            for webhook in receiver.get("webhook_configs", []):
                webhook["url"] = webhook_url
        self.config_path = self.workdir / "alertmanager.yml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    @property
    def address(self) -> str:
        """host:port, as Prometheus' alerting config wants it."""
        return "127.0.0.1:%d" % self.port

    def command(self) -> List[str]:
        return [alertmanager_binary(), "--config.file=%s" % self.config_path,
                "--storage.path=%s" % (self.workdir / "data"),
                "--web.listen-address=127.0.0.1:%d" % self.port, "--cluster.listen-address="]


def node_exporter_binary() -> Optional[str]:
    """Debian names it prometheus-node-exporter; upstream node_exporter. None: neither is installed."""
    return shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")


class NodeExporter(_Server):
    """node_exporter as the compose file's node-exporter service runs it (its flags), reading ``directory``'s
    *.prom files instead of the service's volume: how the monitoring host serves edgescope-report
    --powermode-textfile."""

    name = "node-exporter"
    ready_path = "/metrics"

    def __init__(self, workdir: Path, directory: Path, startup_timeout: float = 30.0) -> None:
        super().__init__(workdir, startup_timeout)
        service = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]["node-exporter"]
        self.flags = [flag for flag in service["command"] if not flag.startswith("--collector.textfile.directory=")]
        self.directory = directory

    @property
    def address(self) -> str:
        """host:port, as a scrape target."""
        return "127.0.0.1:%d" % self.port

    def command(self) -> List[str]:
        return [str(node_exporter_binary())] + self.flags + [
            "--collector.textfile.directory=%s" % self.directory, "--web.listen-address=%s" % self.address]


class WebhookReceiver:
    """Collects the JSON bodies Alertmanager POSTs to http://127.0.0.1:<port>/."""

    def __init__(self) -> None:
        received = self.received = []  # type: List[Dict[str, Any]]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", 0))
                received.append(json.loads(self.rfile.read(length).decode("utf-8")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def alerts(self) -> List[Dict[str, Any]]:
        """Every alert of every notification received so far."""
        return [alert for body in list(self.received) for alert in body.get("alerts", [])]

    def __enter__(self) -> "WebhookReceiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

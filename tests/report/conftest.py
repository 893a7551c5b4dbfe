"""A real Prometheus (Debian's 2.42) holding the synthetic bench of
scenario.py, backfilled with promtool into a tmp data dir, on a free
loopback port; killed at the end of the module."""
import os
import shutil
import socket
import subprocess
import time

import pytest
import requests

from tests.report.scenario import Bench

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, url: str, bench: Bench) -> None:
        self.url = url
        self.bench = bench


@pytest.fixture(scope="session")
def bench_prometheus(tmp_path_factory):
    if not (os.path.exists(PROMETHEUS) and os.path.exists(PROMTOOL)):
        pytest.fail("prometheus and promtool are needed (Debian package prometheus; scripts/install-deps.sh)")
    root = tmp_path_factory.mktemp("prometheus")
    bench = Bench(base=float(int(time.time()) - 5 * 3600))
    source = root / "bench.om"
    source.write_text(bench.openmetrics())
    data = root / "data"
    subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    config = root / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 5s\n")
    port = free_port()
    log = open(str(root / "prometheus.log"), "w")
    process = subprocess.Popen([PROMETHEUS, "--config.file", str(config), "--storage.tsdb.path", str(data),
                                "--web.listen-address", "127.0.0.1:{}".format(port)],
                               stdout=log, stderr=subprocess.STDOUT)
    url = "http://127.0.0.1:{}".format(port)
    try:
        deadline = time.time() + 60
        while True:
            try:
                if requests.get(url + "/-/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError("prometheus did not start: " + (root / "prometheus.log").read_text()[-2000:])
            time.sleep(0.2)
        yield Server(url, bench)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()

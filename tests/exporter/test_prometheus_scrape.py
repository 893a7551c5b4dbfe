"""A real Prometheus scrapes the exporter over HTTPS with bcrypt basic auth, and sees energy grow."""
import shutil
import subprocess
import time

import bcrypt
import pytest
import requests

from tests.exporter.conftest import REPO
from tests.processes import free_port, stop_process
from tests.exporter.test_server import _cert

DEMO = REPO + "/exporter/demo/tegrastats_nano_warming.log"


@pytest.fixture
def prometheus(tmp_path):
    procs = []

    def start(config_text):
        port = free_port()
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(config_text)
        proc = subprocess.Popen(["prometheus", "--config.file", str(cfg), "--storage.tsdb.path", str(tmp_path / "tsdb"),
                                 "--web.listen-address", "127.0.0.1:{}".format(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        return "http://127.0.0.1:{}".format(port)

    yield start
    for p in procs:
        stop_process(p)


def _query(base, expr):
    try:
        r = requests.get(base + "/api/v1/query", params={"query": expr}, timeout=5).json()
    except (requests.RequestException, ValueError):
        return []
    return r.get("data", {}).get("result", [])


def test_prometheus_scrapes_tls_and_basic_auth(tmp_path, run_exporter, prometheus):
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed")
    ca_crt, _, ca_key, ca_name = _cert(tmp_path, "ca", ca=True)
    _cert(tmp_path, "server", ca_key, ca_name)
    hashed = bcrypt.hashpw(b"scrape-pw", bcrypt.gensalt(rounds=4)).decode()
    (tmp_path / "web.yml").write_text("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                                      "basic_auth_users:\n  prom: '{}'\n".format(hashed))
    url, _ = run_exporter("--power-source", "tegrastats", "--tegrastats-file", DEMO, "--interval", "0.2",
                          "--web.config.file", str(tmp_path / "web.yml"), scheme="https",
                          auth=("prom", "scrape-pw"), verify=ca_crt)
    target = url.split("://")[1]
    base = prometheus("""
global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: edgescope-exporter
    scheme: https
    tls_config: {{ca_file: {ca}}}
    basic_auth: {{username: prom, password: scrape-pw}}
    static_configs: [{{targets: ['{target}']}}]
""".format(ca=ca_crt, target=target))
    deadline = time.monotonic() + 40
    scraped = []
    while time.monotonic() < deadline:  # until the 5 s rate window holds 6 scrapes
        scraped = _query(base, "count_over_time(edgescope_board_energy_joules_total[6s])")
        if scraped and float(scraped[0]["value"][1]) >= 6:
            break
        time.sleep(0.5)
    up = _query(base, 'up{job="edgescope-exporter"}')
    assert up and up[0]["value"][1] == "1", "Prometheus could not scrape the exporter"
    rate = _query(base, "rate(edgescope_board_energy_joules_total[5s])")
    # the demo's Nano draws 0.9 - 4.52 W: the energy counter's rate is that power
    assert rate and 0.8 < float(rate[0]["value"][1]) < 4.7, rate

"""The compose file's `fleet` profile: VictoriaMetrics and vmalert, validated by docker-compose
and by vmalert itself on the rules it mounts; and the node-exporter serving the power-mode textfile."""
import glob
import os
import shutil
import subprocess
import tempfile

import pytest
import yaml

from tests.fleet import harness

COMPOSE = harness.REPO / "docker-compose.yml"


def compose_config(**env: str) -> dict:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.fail("docker-compose is needed (Debian package docker-compose; scripts/install-deps.sh)")
    with tempfile.NamedTemporaryFile("w", suffix=".env") as empty:  # a developer's .env does not count
        out = subprocess.run([tool, "--project-directory", str(harness.REPO), "--env-file", empty.name, "-f",
                              str(COMPOSE), "--profile", "fleet", "config"],
                             env=dict(os.environ, GF_ADMIN_PASSWORD="a long secret", **env),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def published(service: dict) -> list:
    return ["{}:{}:{}/{}".format(p.get("host_ip", "0.0.0.0"), p["published"], p["target"], p.get("protocol", "tcp"))
            if isinstance(p, dict) else str(p) for p in service.get("ports", [])]


def test_fleet_profile_runs_victoriametrics_and_vmalert_on_the_project_rules():
    services = compose_config()["services"]
    vm, rules = services["victoriametrics"], services["vmalert"]
    for service in (vm, rules):
        assert service["profiles"] == ["fleet"]
        image, _, tag = service["image"].partition(":")
        assert tag.startswith("v1.") and tag != "latest", service["image"]
    assert published(vm) == ["127.0.0.1:8428:8428/tcp"]  # no auth: localhost unless switched
    assert "victoriametrics-data:/storage:rw" in vm["volumes"]  # a named volume
    assert "-search.cacheTimestampOffset=24h" in vm["command"]  # late (replayed) samples are never hidden
    assert rules["volumes"] == ["{}:/etc/edgescope/rules:ro".format(harness.RULES)]  # the project's rules, read-only
    flags = dict(arg.split("=", 1) for arg in rules["command"])
    assert flags["-datasource.url"] == flags["-remoteWrite.url"] == "http://victoriametrics:8428"
    assert flags["-notifier.url"] == "http://alertmanager:9093" and "alertmanager" in services
    assert flags["-rule"] == "/etc/edgescope/rules/*.yml"
    # vmalert accepts every rule file the compose file mounts
    out = subprocess.run([harness.binary("vmalert"), "-dryRun", "-rule=" + str(harness.RULES / "*.yml")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)
    assert out.returncode == 0 and glob.glob(str(harness.RULES / "*.yml")), out.stdout[-2000:]


def test_fleet_bind_address_switch_opens_victoriametrics():
    services = compose_config(EDGESCOPE_BIND_ADDRESS="0.0.0.0")["services"]
    assert published(services["victoriametrics"]) == ["0.0.0.0:8428:8428/tcp"]


def test_grafana_reads_the_store_named_by_edgescope_query_url():
    services = compose_config(EDGESCOPE_QUERY_URL="http://victoriametrics:8428")["services"]
    assert services["grafana"]["environment"]["EDGESCOPE_QUERY_URL"] == "http://victoriametrics:8428"
    assert compose_config()["services"]["grafana"]["environment"]["EDGESCOPE_QUERY_URL"] == "http://prometheus:9090"
    datasource = yaml.safe_load((harness.REPO / "grafana" / "provisioning" / "datasources" / "edgescope.yml").read_text())
    assert datasource["datasources"][0]["url"] == "$EDGESCOPE_QUERY_URL"


def test_node_exporter_serves_the_powermode_directory_to_the_prometheus_job_only():
    node = compose_config()["services"]["node-exporter"]
    assert node["command"][:2] == ["--collector.disable-defaults", "--collector.textfile"]  # nothing of the host
    assert "--collector.textfile.directory=/textfile" in node["command"]
    assert node["volumes"] == ["{}:/textfile:ro".format(harness.REPO / "powermode")]  # what the docs say to write
    assert published(node) == [] and "profiles" not in node  # only Prometheus, on the compose network, reads it
    config = yaml.safe_load((harness.REPO / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "edgescope-powermode"]
    assert job["static_configs"] == [{"targets": ["node-exporter:9100"]}]
    assert job["honor_labels"]  # the file's device label is the board's, the job names none

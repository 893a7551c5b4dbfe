"""The shipped agent config, systemd unit and its environment file pass the real tools."""
import os
import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from tests.fleet import harness

UNIT = harness.REPO / "deploy" / "prometheus-agent.service"
ENV = harness.REPO / "deploy" / "prometheus-agent.env"


def env_file() -> dict:
    """KEY=VALUE lines as systemd reads them (it allows no comment after a value)."""
    out = {}
    for line in ENV.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            assert "#" not in value and value == value.strip(), line
            out[key] = value
    return out


def unit_directive(name: str) -> str:
    text = UNIT.read_text().replace("\\\n", " ")
    return re.search(r"^{}=(.*)$".format(name), text, re.M).group(1)


def test_agent_config_passes_promtool_in_agent_mode():
    out = subprocess.run([harness.binary("promtool"), "check", "config", "--agent", str(harness.AGENT_CONFIG)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)
    assert out.returncode == 0, out.stdout
    config = yaml.safe_load(harness.AGENT_CONFIG.read_text())
    assert "rule_files" not in config and "alerting" not in config  # an agent evaluates nothing
    assert set(config["global"]["external_labels"]) == {"device", "device_type", "storage"}
    assert {j["job_name"] for j in config["scrape_configs"]} == {"edgescope-exporter", "edgescope-trainer"}


def test_unit_passes_systemd_analyze_and_uses_every_setting_of_its_env_file():
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed")
    out = subprocess.run([tool, "verify", str(UNIT)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, timeout=60)
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout
    start = unit_directive("ExecStart")
    assert "--enable-feature=agent,expand-external-labels" in start
    used = set(re.findall(r"\$\{(\w+)\}", start))
    identity = {"EDGESCOPE_DEVICE", "EDGESCOPE_DEVICE_TYPE", "EDGESCOPE_STORAGE"}
    assert used | identity == set(env_file())


@pytest.mark.parametrize("missing", ["EDGESCOPE_DEVICE", "EDGESCOPE_DEVICE_TYPE", "EDGESCOPE_STORAGE"])
def test_unit_refuses_to_start_without_an_identity(missing):
    pre = shlex.split(unit_directive("ExecStartPre"))
    env = dict(os.environ, **env_file())
    assert subprocess.run(pre, env=env, timeout=10).returncode == 0
    env[missing] = ""
    out = subprocess.run(pre, env=env, stderr=subprocess.PIPE, universal_newlines=True, timeout=10)
    assert out.returncode != 0 and missing in out.stderr and out.stderr.count("\n") == 1

"""The stack's files pass the official tools: promtool, amtool, docker-compose.

CI runs these through pytest (.ci/run), so a broken rule, alert, test,
Alertmanager route or compose file fails the build.
"""
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import yaml

from tests.stack.catalog import REPO, alert_names, rule_names

PROMETHEUS = REPO / "prometheus"
RULE_FILES = sorted(str(p) for p in (PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted(PROMETHEUS.glob("tests/*.yml"))


def run(cmd: List[str], env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=str(REPO), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=120)


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, "%s failed:\n%s" % (" ".join(result.args), result.stdout)


def test_promtool_check_config() -> None:
    result = run(["promtool", "check", "config", str(PROMETHEUS / "prometheus.yml")])
    assert_ok(result)
    assert "SUCCESS" in result.stdout


def test_promtool_check_rules() -> None:
    assert RULE_FILES, "no rule files under prometheus/rules"
    assert_ok(run(["promtool", "check", "rules"] + RULE_FILES))


def test_promtool_test_rules() -> None:
    assert RULE_TESTS, "no promtool tests under prometheus/tests"
    result = run(["promtool", "test", "rules"] + [str(p) for p in RULE_TESTS])
    assert_ok(result)
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS)


def test_promtool_test_rules_can_fail(tmp_path: Path) -> None:
    """A wrong expected value makes promtool fail: the unit tests are not vacuous."""
    source = PROMETHEUS / "tests" / "recording_test.yml"
    broken = tmp_path / "tests" / source.name
    broken.parent.mkdir()
    text = source.read_text(encoding="utf-8").replace("../rules/", str(PROMETHEUS / "rules") + "/")
    assert "value: 1500\n" in text
    broken.write_text(text.replace("value: 1500\n", "value: 1501\n", 1), encoding="utf-8")
    result = run(["promtool", "test", "rules", str(broken)])
    assert result.returncode != 0 and "FAILED" in result.stdout


def test_every_rule_and_alert_has_a_promtool_test() -> None:
    tested_exprs = []  # type: List[str]
    tested_alerts = set()
    firing_alerts = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            tested_exprs += [t["expr"] for t in case.get("promql_expr_test", [])]
            for t in case.get("alert_rule_test", []):
                tested_alerts.add(t["alertname"])
                if t.get("exp_alerts"):
                    firing_alerts.add(t["alertname"])
    untested = sorted(r for r in rule_names() if not any(r in e for e in tested_exprs))
    assert not untested, "recording rules without a promtool test: %s" % untested
    assert alert_names() - tested_alerts == set(), "alerts without a test"
    assert alert_names() - firing_alerts == set(), "alerts never shown firing in a test"


def test_every_alert_summary_names_the_device() -> None:
    for path in (PROMETHEUS / "rules").glob("*.yml"):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert "{{ $labels.device }}" in rule["annotations"]["summary"], rule["alert"]


def test_amtool_check_config() -> None:
    result = run(["amtool", "check-config", str(REPO / "alertmanager" / "alertmanager.yml")])
    assert_ok(result)
    assert "SUCCESS" in result.stdout


def compose_env(**extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GF_", "EDGESCOPE_", "GRAFANA_", "COMPOSE_"))}
    env.update(extra)
    return env


def compose_config(env: Dict[str, str]) -> subprocess.CompletedProcess:
    """`docker-compose config` with only `env` (an empty --env-file: a developer's .env does not count)."""
    with tempfile.NamedTemporaryFile(suffix=".env") as empty:
        return run(["docker-compose", "--project-directory", str(REPO), "--env-file", empty.name, "-f",
                    str(REPO / "docker-compose.yml"), "config"], env=env)


def test_compose_refuses_without_grafana_password() -> None:
    for env in (compose_env(), compose_env(GF_ADMIN_PASSWORD="")):
        result = compose_config(env)
        assert result.returncode != 0
        assert "GF_ADMIN_PASSWORD" in result.stdout


@pytest.fixture(scope="module")
def compose() -> dict:
    result = compose_config(compose_env(GF_ADMIN_PASSWORD="s3cret-for-test"))
    assert_ok(result)
    return yaml.safe_load(result.stdout)


def test_compose_images_are_pinned(compose: dict) -> None:
    for name, service in compose["services"].items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and any(c.isdigit() for c in tag), (name, image)


def test_compose_grafana_is_locked_down(compose: dict) -> None:
    env = compose["services"]["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == "s3cret-for-test"
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"


def test_compose_config_mounts_read_only_and_data_in_named_volumes(compose: dict) -> None:
    expected_ro = {"prometheus": "/etc/prometheus", "alertmanager": "/etc/alertmanager",
                   "grafana": "/etc/grafana/provisioning"}
    for name, target in expected_ro.items():
        mounts = compose["services"][name]["volumes"]
        assert any(m.split(":")[1] == target and m.endswith(":ro") for m in mounts), (name, mounts)
    assert set(compose["volumes"]) >= {"prometheus-data", "grafana-data", "alertmanager-data"}


def ports(compose: dict, service: str) -> List[str]:
    return [str(p) for p in compose["services"][service]["ports"]]


def test_compose_binds_prometheus_and_alertmanager_to_localhost(compose: dict) -> None:
    assert ports(compose, "prometheus") == ["127.0.0.1:9090:9090/tcp"]
    assert ports(compose, "alertmanager") == ["127.0.0.1:9093:9093/tcp"]


def test_compose_bind_address_switch() -> None:
    result = compose_config(compose_env(GF_ADMIN_PASSWORD="x", EDGESCOPE_BIND_ADDRESS="0.0.0.0"))
    assert_ok(result)
    config = yaml.safe_load(result.stdout)
    assert ports(config, "prometheus") == ["0.0.0.0:9090:9090/tcp"]
    assert ports(config, "alertmanager") == ["0.0.0.0:9093:9093/tcp"]

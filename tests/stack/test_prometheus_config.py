"""The project's prometheus.yml and rules, live in the real Prometheus.

A board is one file_sd entry; its identity labels reach every series; the
exporter and trainer jobs find their ports; a recording rule and an alert
evaluate. Served here by a plain exposition of known values, so that the
numbers can be checked exactly (the exporter and trainer themselves are
the subject of the integration test).
"""
import time

import pytest

from tests.stack.harness import ExpositionServer, PrometheusError, Target, free_port

WATTS = 5.0


def exporter_text(start: float) -> str:
    joules = WATTS * (time.monotonic() - start)
    return (
        "# TYPE edgescope_board_energy_joules_total counter\n"
        "edgescope_board_energy_joules_total %r\n"
        "# TYPE edgescope_board_power_watts gauge\n"
        "edgescope_board_power_watts %r\n" % (joules, WATTS)
    )


def test_one_entry_per_board_scrapes_both_jobs_with_identity_labels(prometheus_server) -> None:
    start = time.monotonic()
    with ExpositionServer(lambda: exporter_text(start)) as exporter:
        prom = prometheus_server()
        idle_trainer_port = free_port()
        prom.set_targets([
            Target("nano-01", "nano", "sd", exporter_port=exporter.port, trainer_port=idle_trainer_port),
            Target("orin-01", "agx-orin", "ssd", host="orin-01.invalid"),
        ])

        targets = prom.wait_until(lambda: len(prom.active_targets()) == 4 and prom.active_targets(),
                                  what="4 discovered targets")
        found = {(t["labels"]["job"], t["labels"]["instance"]): t["labels"] for t in targets}
        assert set(found) == {
            ("edgescope-exporter", "127.0.0.1:%d" % exporter.port),
            ("edgescope-trainer", "127.0.0.1:%d" % idle_trainer_port),
            ("edgescope-exporter", "orin-01.invalid:9945"),   # the production default ports
            ("edgescope-trainer", "orin-01.invalid:9946"),
        }
        orin = found[("edgescope-exporter", "orin-01.invalid:9945")]
        assert (orin["device"], orin["device_type"], orin["storage"]) == ("orin-01", "agx-orin", "ssd")
        assert not any(name.startswith("__") for labels in found.values() for name in labels)

        # the counter's rate is the board power, with the board's identity attached
        series = prom.wait_until(
            lambda: [s for s in prom.query('device:edgescope_board_energy_joules:rate1m')
                     if float(s["value"][1]) > 0],
            what="a recorded board power")
        assert len(series) == 1
        labels = series[0]["metric"]
        assert labels["device"] == "nano-01" and labels["device_type"] == "nano" and labels["storage"] == "sd"
        assert labels["job"] == "edgescope-exporter"
        # rate() over a 1m window holding only seconds of data understates
        # (it divides by the window): the value is checked in the integration
        # test, which runs long enough to fill the window.
        assert 0 < float(series[0]["value"][1]) <= WATTS * 1.01

        # the unreachable board's exporter is alerted (pending: for 2m); the idle
        # trainer (no run) is not
        alert = prom.wait_for_alert("EdgescopeExporterDown", state="pending")
        assert alert["labels"]["device"] == "orin-01"
        assert alert["annotations"]["summary"] == \
            "orin-01: edgescope exporter unreachable at orin-01.invalid:9945"
        assert not [a for a in prom.alerts() if a["labels"]["alertname"] == "EdgescopeTrainerDown"]


def test_harness_reports_a_query_error(prometheus_server) -> None:
    prom = prometheus_server()
    with pytest.raises(PrometheusError, match="bad_data"):
        prom.query("rate(up[")

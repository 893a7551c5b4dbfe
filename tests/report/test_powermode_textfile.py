"""edgescope-report --powermode-textfile: each workload's measured and predicted power modes (the fake Orin of
test_powermode.py) as a Prometheus text file that promtool accepts, with the report's own numbers; served by a real
node_exporter (the compose file's flags) to a real Prometheus (the project's edgescope-powermode job), where the
comparison dashboard's panel reads both kinds back."""
import json
import math
import subprocess
from pathlib import Path
from typing import Dict, List, Mapping, Tuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

from report import cli
from report.collect import Collected, Run
from report.powermode_textfile import SERIES
from tests.report.test_powermode import CONF, run_in
from tests.stack.catalog import all_values, dashboards, panels, substitute
from tests.stack.harness import NodeExporter, Prometheus, node_exporter_binary
from trainer.mode import MODE_LABELS, Mode

NAN = math.nan
MODES = [Mode(4, NAN, 1.19e9, 612e6, 2.133e9), Mode(4, NAN, 1.4976e9, 612e6, 3.199e9),
         Mode(6, 3.0, 1.4976e9, 765e6, 2.133e9), Mode(2, NAN, 1.19e9, 510e6, 2.133e9),
         Mode(6, NAN, 1.19e9, 612e6, 3.199e9), Mode(6, NAN, 1.984e9, 918e6, 3.199e9)]
NAMES = [name for name, _ in SERIES]
EPOCH, ENERGY, TIME_BAR, ENERGY_BAR = NAMES
Key = Tuple[str, str, str, Tuple[str, ...], str]  # series, model, kind, the mode's hardware labels, extrapolated


def replayed(run: Run) -> Run:
    """The run with its power played back from a recorded log, not measured on the board."""
    run.power_replayed = True
    for epoch in run.epochs:
        epoch.power_replayed = True
    return run


def runs() -> List[Run]:
    """resnet18 in 6 modes (cross-validated: time and energy bars; 25W has 8 cores, extrapolated), vgg11 in 2 (no
    bar) with replayed power."""
    return ([run_in(m, "resnet-{}".format(i)) for i, m in enumerate(MODES)]
            + [replayed(run_in(m, "vgg-{}".format(i), model="vgg11")) for i, m in enumerate(MODES[:2])])


def report_args(monkeypatch: pytest.MonkeyPatch) -> List[str]:
    """edgescope-report's flags for runs() and the fake Orin NX's nvpmodel.conf; the runs are collected in memory
    (report.collect's reading of Prometheus has tests of its own)."""
    monkeypatch.setattr(cli, "collect", lambda *args: Collected(runs=runs(), notes=[]))
    return ["--prometheus", "http://127.0.0.1:9", "--format", "json", "--nvpmodel-conf", CONF]


def write_textfile(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, path: Path) -> dict:
    """edgescope-report --powermode-textfile path: the report's JSON."""
    code = cli.main(report_args(monkeypatch) + ["--powermode-textfile", str(path)])
    out, err = capsys.readouterr()
    assert code == 0 and err == "edgescope-report: wrote {}\n".format(path), err
    return json.loads(out)


def key(series: str, labels: Mapping[str, str], kind: str) -> Key:
    return (series, labels["model"], kind, tuple(labels.get(name) or "" for name in MODE_LABELS),
            labels.get("extrapolated") or "")


def in_file(text: str) -> Dict[Key, float]:
    return {key(s.name, s.labels, s.labels["kind"]): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_report_writes_the_measured_and_predicted_modes_with_its_own_numbers(tmp_path, monkeypatch, capsys):
    path = tmp_path / "powermode.prom"
    report = write_textfile(monkeypatch, capsys, path)
    text = path.read_text(encoding="utf-8")
    check = subprocess.run(["promtool", "check", "metrics"], input=text, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)
    assert check.returncode == 0 and not check.stdout.strip(), check.stdout
    found = in_file(text)
    expected = {}  # type: Dict[Key, float]
    for row in report["comparison"]:  # each measured mode: its comparison row's means, never replayed energy
        labels = dict(row["configuration"], model=row["model"])
        expected[key(EPOCH, labels, "measured")] = row["e2e_seconds"]["mean"]
        if not row["power_replayed"]:
            expected[key(ENERGY, labels, "measured")] = row["energy_joules"]["mean"]
    refused = 0
    for workload in report["power_modes"]:
        cv = workload["cross_validation"]
        for p in workload["predicted"]:
            labels = dict(p["mode_labels"], model=workload["workload"]["model"],
                          extrapolated=", ".join(p["extrapolated"]))
            refused += p["e2e_seconds"] is None  # nothing written
            figures = [(EPOCH, p["e2e_seconds"]), (ENERGY, p["energy_joules"]),
                       (TIME_BAR, cv["time_error_ratio"] if p["e2e_seconds"] is not None else None),
                       (ENERGY_BAR, cv["energy_error_ratio"] if p["energy_joules"] is not None else None)]
            expected.update((key(series, labels, "predicted"), value) for series, value in figures
                            if value is not None)
    assert found == expected
    # every case is there: refused modes, bars and none, energy and none (vgg11's power is replayed)
    assert refused >= 2 and {k[0] for k in found if k[1] == "resnet18"} == set(NAMES)
    assert {k[:3] for k in found if k[1] == "vgg11"} == {(EPOCH, "vgg11", "measured"), (EPOCH, "vgg11", "predicted")}
    assert any(k[4] for k in found)


def test_a_textfile_that_cannot_be_written_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    target = tmp_path / "no such directory" / "powermode.prom"
    assert cli.main(report_args(monkeypatch) + ["--powermode-textfile", str(target)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == ("edgescope-report: error: cannot write power-mode textfile {}: No such file or "
                                 "directory; pick another --powermode-textfile\n".format(target))
    # a name node_exporter's textfile collector would never read: refused before anything is read
    with pytest.raises(SystemExit) as exit_:
        cli.main(report_args(monkeypatch) + ["--powermode-textfile", str(tmp_path / "powermode.txt")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "--powermode-textfile" in err and "powermode.txt" in err and "*.prom" in err


@pytest.mark.parametrize("flags", [["--powermode-textfile", "{tmp}/powermode.prom"], ["--plots", "{tmp}/plots"],
                                   ["--pareto", "--power-budget", "5"], ["--nvpmodel-conf", "{tmp}/nvpmodel.conf"]])
def test_report_flags_asked_of_the_timeline_drawing_are_refused_not_ignored(tmp_path, capsys, flags):
    """--timeline draws an epoch instead of the report: it has no power modes to write, no plots, no front, so a
    report's flag is a mistake in the command (one line naming each, exit 2) rather than a file the user waits for
    and never gets."""
    flags = [f.format(tmp=tmp_path) for f in flags]
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--timeline", "run-1", "--timeline-dir", str(tmp_path)] + flags)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "--timeline" in err
    assert all(f in err for f in flags if f.startswith("--"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(node_exporter_binary() is None,
                    reason="no node_exporter: scripts/install-deps.sh installs Debian's prometheus-node-exporter")
def test_the_comparison_dashboard_reads_both_kinds_back_through_node_exporter(tmp_path, monkeypatch, capsys):
    directory = tmp_path / "textfile"
    directory.mkdir()
    write_textfile(monkeypatch, capsys, directory / "powermode.prom")
    found = in_file((directory / "powermode.prom").read_text(encoding="utf-8"))
    board = dashboards()["compare-devices.json"]
    (panel,) = [p for p in panels(board) if p["title"] == "Power modes: measured and predicted"]
    values = dict(all_values(board["templating"]["list"]), device="orin-1")  # "All" of every other filter
    with NodeExporter(tmp_path / "node-exporter", directory) as node, \
            Prometheus(tmp_path / "prometheus", static_targets={"edgescope-powermode": node.address}) as prom:
        queries = [substitute(target["expr"], values) for target in panel["targets"]]
        prom.wait_for(queries[0])
        results = [r for query in queries for r in prom.query(query)]
    assert {(r["metric"]["job"], r["metric"]["device"]) for r in results} == {("edgescope-powermode", "orin-1")}
    read = {key(r["metric"]["__name__"], r["metric"], r["metric"]["kind"]): float(r["value"][1]) for r in results}
    assert read == found and {k[2] for k in read} == {"measured", "predicted"}

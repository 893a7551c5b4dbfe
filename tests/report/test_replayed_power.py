"""Replayed power (a recorded tegrastats log played back by the trainer's --tegrastats-file or by the exporter)
is marked wherever the report shows it: read back from a real Prometheus, it is off the Pareto front and out of
every recommendation with one line saying so, its spread is never shown as a measured one (a loop of one log
gives the same watts every epoch: "± 0.00"), and its point is drawn marked on the Pareto PNG and listed on the
html page, checked in headless Chromium."""
import json
import time

import matplotlib.image
import numpy

from report import html_page, plots
from report.collect import Collected
from report.render import as_text, build, tables
from tests.report import synthetic
from tests.report.browser import loaded
from tests.report.conftest import backfilled
from tests.report.test_report_html import cli

SCRAPE = 5.0
REPLAYED_PURPLE = (0xCC, 0x79, 0xA7)  # plots.pareto_front's crosses for replayed power


def openmetrics(base: float, runs=(("replayed", "4", 20.0, [4.0, 4.0, 4.0], 1),
                                   ("measured", "2", 30.0, [5.5, 5.7, 5.6], 0)),
                energy_source: str = "tegrastats", exporter_replays: bool = False) -> str:
    """Two runs on one board (4 and 2 workers), each with the trainer's own energy: ``replayed`` (4.0 W
    exactly, every epoch: a log played back; the faster, and under any power budget the pick if it counted)
    and ``measured`` (5.5-5.7 W). ``runs``: (run id, workers, seconds, watts per epoch or None where the
    trainer measured none, the trainer's replay flag) each. ``exporter_replays``: the board's exporter replays a
    tegrastats log at 4 W (its energy counter and edgescope_power_source_info{replay="true"}), scraped every 5 s
    throughout."""
    lines = {}  # type: dict
    t = base + 60.0
    for run_id, workers, seconds, watts, replayed in runs:
        target = {"job": "edgescope-trainer", "instance": "nano-1:9946", "device": "nano-1",
                  "device_type": "nano", "storage": "sd", "run_id": run_id}
        info = dict(target, model="resnet18", dataset="cifar10", dataset_samples="50000", batch_size="16",
                    workers=workers, prefetch_factor="2", pin_memory="false", timing="lazy", torch_device="cpu",
                    device_name="nano-1", energy_source=energy_source)
        start = t
        for k, w in enumerate(watts):
            e2e = seconds + 0.1 * k
            epoch = dict(target, epoch=str(k))
            for name, value in (("start_timestamp_seconds", start), ("end_timestamp_seconds", start + e2e),
                                ("duration_seconds", e2e), ("fetch_stall_seconds", 0.2 * e2e),
                                ("compute_seconds", 0.7 * e2e), ("samples", 50000.0)) + (() if w is None else (
                                    ("energy_joules", w * e2e), ("energy_bound_joules", 0.1),
                                    ("average_power_watts", w), ("power_replayed", float(replayed)))):
                lines.setdefault("edgescope_train_epoch_" + name, []).append((epoch, value, start + e2e))
            start += e2e + 1.0
        lines.setdefault("edgescope_train_run_info", []).append((info, 1.0, t - 2.0))
        lines["edgescope_train_run_info"].append((info, 1.0, start + 20.0))
        t = start + 60.0
    out = []
    for name, samples in lines.items():
        out.append("# TYPE {} gauge".format(name))
        for labels, value, since in samples:
            text = ",".join('{}="{}"'.format(k, v) for k, v in sorted(labels.items()))
            ts = since
            while ts < since + 40.0:  # scraped every 5 s for a while after it appeared
                out.append("{}{{{}}} {!r} {:.3f}".format(name, text, value, ts))
                ts += SCRAPE
    if exporter_replays:
        exporter = 'device="nano-1",device_type="nano",instance="nano-1:9100",job="edgescope-exporter"'
        scrapes = [base + SCRAPE * k for k in range(int((t + 200.0 - base) / SCRAPE))]
        out += ["# TYPE edgescope_board_energy_joules counter"] + [
            "edgescope_board_energy_joules_total{{{}}} {!r} {:.3f}".format(exporter, 4.0 * (ts - base), ts)
            for ts in scrapes] + ["# TYPE edgescope_power_source_info gauge"] + [
            'edgescope_power_source_info{{{},board_rail="sum",fallback_from="",replay="true",source="tegrastats"}} '
            '1.0 {:.3f}'.format(exporter, ts) for ts in scrapes]
    return "\n".join(out + ["# EOF"]) + "\n"


def test_a_trainer_replay_read_back_from_prometheus_never_advises(tmp_path):
    base = float(int(time.time()) - 3 * 3600)
    with backfilled(tmp_path, openmetrics(base)) as url:
        window = ["--prometheus", url, "--since", repr(base), "--until", repr(base + 3600), "--pareto",
                  "--power-budget", "10"]
        report = json.loads(cli(*window, "--format", "json"))
    rows = {tuple(r["runs"]): r for r in report["comparison"]}
    replayed, measured = rows[("replayed",)], rows[("measured",)]
    assert replayed["power_replayed"] and not measured["power_replayed"]
    assert replayed["average_power_watts"] == {"mean": 4.0, "std": None}  # the log's, not the board's
    assert measured["average_power_watts"]["std"] > 0
    assert [s["power_replayed"] for s in report["summary"]] == [True, False]
    assert [e["power_replayed"] for e in report["epochs"]] == [True] * 3 + [False] * 3
    (front,) = report["pareto"]
    assert [p["runs"] for p in front["points"]] == [["measured"]]
    assert [p["runs"] for p in front["replayed"]] == [["replayed"]]
    assert front["recommendation"]["runs"] == ["measured"]  # the faster, cheaper replay is never the pick
    assert sum("replayed from a recorded log" in n for n in report["notes"]) == 1
    assert any(n.startswith("run replayed on nano-1: power and energy of epoch(s) 0, 1, 2 are REPLAYED")
               for n in report["notes"])
    assert power_cells(report) == {"replayed": ["4.00 (replayed)"] * 2, "measured": ["5.65 ± 0.07"] * 2}
    assert "replayed power: off the front, never recommended" in as_text(report)


def test_an_exporter_replay_leaves_the_trainers_own_measurement_measured(tmp_path):
    """The board's exporter replays a tegrastats log while the trainer measures energy itself (rapl): run
    ``rapl`` (its every epoch measured by the trainer) stays measured and advises; run ``gaps`` (epoch 2 not
    measured by the trainer, so read from the replaying exporter's counter) has that epoch alone replayed. The
    one note per run names the exporter's replaying source and which epochs it gave."""
    base = float(int(time.time()) - 3 * 3600)
    runs = (("rapl", "4", 20.0, [5.0, 5.2, 5.1], 0), ("gaps", "2", 30.0, [5.5, 5.7, None], 0))
    with backfilled(tmp_path, openmetrics(base, runs, energy_source="rapl", exporter_replays=True)) as url:
        report = json.loads(cli("--prometheus", url, "--since", repr(base), "--until", repr(base + 3600),
                                "--pareto", "--power-budget", "10", "--format", "json"))
    epochs = {(e["run_id"], e["epoch"]): (e["energy_source"], e["power_replayed"]) for e in report["epochs"]}
    assert epochs == {("rapl", 0): ("trainer", False), ("rapl", 1): ("trainer", False),
                      ("rapl", 2): ("trainer", False), ("gaps", 0): ("trainer", False),
                      ("gaps", 1): ("trainer", False), ("gaps", 2): ("exporter", True)}
    assert {s["run_id"]: s["power_replayed"] for s in report["summary"]} == {"rapl": False, "gaps": True}
    (front,) = report["pareto"]
    assert [p["runs"] for p in front["points"]] == [["rapl"]] and front["recommendation"]["runs"] == ["rapl"]
    replay_notes = sorted(n for n in report["notes"] if "replays a recorded power log" in n)
    assert replay_notes == [
        "run gaps on nano-1: the exporter's power source tegrastats replays a recorded power log, not this board's "
        "power (edgescope_power_source_info{replay=\"true\"}): power and energy of epoch(s) 2 are REPLAYED, read "
        "from its counter; epoch(s) 0, 1 keep the trainer's own measurement (energy source rapl), not replayed; "
        "its board power curve is replayed",
        "run rapl on nano-1: the exporter's power source tegrastats replays a recorded power log, not this board's "
        "power (edgescope_power_source_info{replay=\"true\"}): epoch(s) 0, 1, 2 keep the trainer's own "
        "measurement (energy source rapl), not replayed; its board power curve is replayed"]


def replayed_runs() -> list:
    """A measured run and one whose power a replayed log gave (as report.collect marks it), one workload."""
    measured, replayed = synthetic.run(0, run_id="measured"), synthetic.run(2, run_id="replayed-demo")
    replayed.power_replayed = True
    for epoch in replayed.epochs:
        epoch.power_replayed = True
    return [measured, replayed]


def test_the_replayed_point_is_drawn_marked_and_listed_in_chromium(tmp_path):
    runs = replayed_runs()
    report = build(Collected(runs=runs, notes=[]), 1, {"pareto": True, "power_budget": 100.0})
    (front,) = report["pareto"]
    assert [p["runs"] for p in front["replayed"]] == [["replayed-demo"]]
    images = plots.png_images(runs, report)
    without = dict(report, pareto=[dict(front, replayed=[])])
    purple = []
    for drawn in (images["pareto"], plots.png_images(runs, without)["pareto"]):
        (tmp_path / "pareto.png").write_bytes(drawn)
        pixels = (matplotlib.image.imread(str(tmp_path / "pareto.png"))[:, :, :3] * 255).round()
        purple.append(int(numpy.all(numpy.abs(pixels - numpy.array(REPLAYED_PURPLE)) <= 2, axis=2).sum()))
    assert purple[0] > 200 and purple[1] < purple[0] / 4, purple  # the cross and its legend entry, only where drawn
    page = tmp_path / "report.html"
    page.write_text(html_page.as_html(report, plots.data_uris(images)), encoding="utf-8")
    dom, hosts = loaded(page)
    assert hosts == []
    pareto = dom.tables[-1]
    assert pareto[0] == ["device", "workload", "configuration", "E2E", "energy", "power", "pareto"]
    (line,) = [row for row in pareto[1:] if row[-1] == "replayed power: off the front, never recommended"]
    assert line[5].endswith(" W (replayed)") and "±" not in line[5]
    assert "pareto" in [image["alt"] for image in dom.tags("img")]
    cells = power_cells(report)
    assert cells["replayed-demo"] == ["5.60 (replayed)"] * 2 and all("±" in c for c in cells["measured"])


def power_cells(report: dict) -> dict:
    """Each run's power cells in the per-run and comparison tables (each comparison row here holds one run)."""
    cells = {}  # type: dict
    for (_, headers, rows), records in zip(tables(report)[1:3], (report["summary"], report["comparison"])):
        for row, record in zip(rows, records):
            (name,) = record.get("runs") or [record["run_id"]]
            cells.setdefault(name, []).append(row[headers.index("power W")])
    return cells

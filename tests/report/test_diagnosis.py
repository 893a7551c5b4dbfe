"""Diagnosis, what-if and Pareto front through a real Prometheus holding the
diagnosis bench (tests/report/diagnosis_bench.py): each bottleneck class, the
what-if arithmetic against hand-computed figures, the prediction error where
the predicted configuration was measured, and the front with its recommendation."""
import math
import statistics
import time

import pytest

from report.cli import main
from report.diagnosis import diagnose
from tests.report.conftest import Server, backfilled
from tests.report.diagnosis_bench import RUNS, DiagnosisBench
from tests.report.test_report_prometheus import report_json

T_2_EPOCHS = math.tan(math.pi * (0.8413447 - 0.5))  # Student t, 1 degree of freedom, at one sigma: 1.837


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    bench = DiagnosisBench(base=float(int(time.time()) - 3 * 3600))
    with backfilled(tmp_path_factory.mktemp("diagnosis"), bench.openmetrics()) as url:
        yield Server(url, bench)


def by_run(result):
    return {s["run_id"]: s for s in result["summary"]}


def test_collects_the_decomposition_and_the_disk_numbers(server):
    runs = by_run(report_json(server))
    for run_id, (_, _, n) in RUNS.items():
        s = runs[run_id]
        assert s["fetch_stall_storage_seconds"]["mean"] == pytest.approx(n.storage)
        assert s["fetch_stall_preprocess_seconds"]["mean"] == pytest.approx(n.preprocess_stall)
        assert s["read_seconds"]["mean"] == pytest.approx(n.read_s)
        assert s["preprocess_seconds"]["mean"] == pytest.approx(n.preprocess_s)
        assert s["disk_utilisation_ratio"]["mean"] == pytest.approx(n.disk_busy, abs=1e-6)
        assert s["read_bytes_per_second"]["mean"] == pytest.approx(n.read_bps, rel=1e-6)
        assert s["page_cache_ratio"]["mean"] == pytest.approx(n.cached)
        assert s["page_cache_lowest_ratio"]["mean"] == pytest.approx(n.cached)  # steady over each run


def test_each_bottleneck_class_with_its_evidence(server):
    result = report_json(server)
    runs = by_run(result)
    expected = {"cold-w2": "storage", "cached-w2": "preprocessing", "cached-w2-5w": "preprocessing",
                "pre-w2": "preprocessing", "pre-w4": "preprocessing", "gpu-bound": "compute", "mixed": "mixed",
                "mixed-synthetic": "compute"}
    assert {r: s["bottleneck"] for r, s in runs.items()} == expected
    assert runs["cold-w2"]["bottleneck_evidence"] == \
        "stall 60% of E2E: 90% storage, 10% preprocessing; disk busy 90%, 10% cached, reads 4.00 MB/s"
    assert runs["gpu-bound"]["bottleneck_evidence"].startswith("stall 2% of E2E (< 10%)")
    # one run per configuration here: every comparison row carries its run's diagnosis
    rows = {tuple(c["runs"]): c["bottleneck"] for c in result["comparison"]}
    assert rows == {(r,): b for r, b in expected.items()}


def test_what_ifs_are_the_trainers_replays_averaged_with_their_spread_and_checked_against_measured_runs(server):
    runs = by_run(report_json(server, "--storage-bps", "8e6"))
    cold = runs["cold-w2"]["what_if"]
    # epochs 1 and 2 kept: 22.8 and 23.4 s replayed with the dataset cached, at the run's 6 W; the bar: their
    # spread × Student t for 1 degree of freedom at one sigma, with the suite's 2 % model error for dataset_cached
    cached = cold["dataset_cached"]
    assert cached["e2e_seconds"] == pytest.approx(23.1) and cached["epochs"] == 2
    assert cached["epochs_spread_seconds"] == pytest.approx(statistics.stdev([22.8, 23.4]))
    bar = math.hypot(T_2_EPOCHS * statistics.stdev([22.8, 23.4]), 0.02 * 23.1)  # 0.91 s
    assert cached["e2e_spread_seconds"] == pytest.approx(bar) and cached["model_error_ratio"] == 0.02
    assert cached["energy_joules"] == pytest.approx(6.0 * 23.1)
    measured = cached["measured"]
    assert measured["runs"] == ["cached-w2"] and measured["e2e_seconds"] == pytest.approx(23.5)
    assert measured["e2e_error_ratio"] == pytest.approx((23.1 - 23.5) / 23.5)
    assert measured["e2e_error_spread_ratio"] == pytest.approx(bar / 23.5)  # the measured epochs do not spread
    assert measured["within_noise"]  # 23.1 ± 0.91 reaches 23.5 ± 0
    assert cold["storage_bps=8e+06"]["e2e_seconds"] == pytest.approx(38.25)
    assert cold["compute_speedup=2"]["e2e_seconds"] == pytest.approx(41.1)
    assert "measured" not in cold["workers_doubled"]  # no 4-worker cold run
    # never replayed for storage workers: it says what to run
    pre = runs["pre-w2"]["what_if"]
    assert pre["workers_doubled"]["e2e_seconds"] == pytest.approx(21.2)
    assert pre["workers_doubled"]["measured"]["runs"] == ["pre-w4"]
    assert pre["workers_doubled"]["measured"]["e2e_error_ratio"] == pytest.approx((21.2 - 22.0) / 22.0)
    assert not pre["workers_doubled"]["measured"]["within_noise"]  # 21.2 ± 0.67 does not reach 22.0
    # not calibrated (the suite's table has no compute_speedup): the widened spread alone, and the basis says so
    speedup = cold["compute_speedup=2"]
    assert speedup["model_error_ratio"] is None and "not calibrated" in speedup["basis"]
    assert speedup["e2e_spread_seconds"] == pytest.approx(T_2_EPOCHS * speedup["epochs_spread_seconds"])
    assert pre["dataset_cached"]["e2e_seconds"] is None
    # replayed in one kept epoch of two: no prediction from half the epochs
    assert runs["gpu-bound"]["what_if"]["dataset_cached"]["basis"] == "replayed for 1 of the 2 kept epochs"
    report = report_json(server, "--storage-bps", "4e6")
    assert by_run(report)["cold-w2"]["what_if"]["storage_bps=4e+06"]["basis"] == \
        "not replayed by the trainer (run edgescope-train with --what-if-storage-bps 4e+06)"
    assert all(p["e2e_seconds"] is None and p["basis"] == "synthetic input: no loader to change"
               for p in runs["mixed-synthetic"]["what_if"].values())


def test_one_kept_epoch_gives_no_prediction_and_says_why(server):
    runs = by_run(report_json(server, "--warmup-epochs", "2"))
    assert runs["cold-w2"]["what_if"]["dataset_cached"] == {
        "e2e_seconds": None, "e2e_spread_seconds": None, "energy_joules": None, "energy_spread_joules": None,
        "compute_seconds": None, "epochs": 0, "epochs_spread_seconds": None, "model_error_ratio": None,
        "basis": "1 kept epoch: an error bar needs 2 or more"}


def test_plots_without_matplotlib_are_one_line(monkeypatch):
    import sys

    from report.cli import _plots
    from report.prom import ReportError
    monkeypatch.setitem(sys.modules, "report.plots", None)  # as on a core-only install: no matplotlib
    with pytest.raises(ReportError, match=r"^--plots and --format html need matplotlib .*pip install '\.\[report\]'$"):
        _plots()


def test_prediction_error_in_the_table_with_the_digits_its_spread_allows(server, capsys):
    assert main(["--prometheus", server.url, "--since", repr(server.bench.base), "--until",
                 repr(server.bench.end)]) == 0
    out = capsys.readouterr().out
    line = [x for x in out.splitlines() if x.startswith("cold-w2") and "measured" in x]
    assert len(line) == 1 and "23.1 ± 0.9 s / 139 ± 5 J (measured 23.50 ± 0 s: -2 ± 4 %, within noise)" in line[0]
    assert "(not calibrated: its bar is the epochs' spread alone)" in line[0]  # compute_speedup=2's cell
    pre = [x for x in out.splitlines() if x.startswith("pre-w2") and "measured" in x]
    assert "21.2 ± 0.7 s / 106 ± 3 J (measured 22.00 ± 0 s: -4 ± 3 %)" in pre[0]


def test_pareto_front_and_recommendations(server, tmp_path):
    result = report_json(server, "--pareto", "--power-budget", "5", "--plots", str(tmp_path))
    fronts = {f["model"]: f for f in result["pareto"]}
    resnet = fronts["resnet18"]
    points = [(p["runs"], p["dominated"]) for p in resnet["points"]]
    assert points == [(["cached-w2"], False), (["cached-w2-5w"], False), (["cold-w2"], True)]
    assert resnet["recommendation"]["runs"] == ["cached-w2-5w"]  # the only front point within 5 W
    mobilenet = fronts["mobilenet"]
    assert [p["dominated"] for p in mobilenet["points"]] == [False, True]  # w4 is faster and cheaper
    assert (tmp_path / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fast = {f["model"]: f for f in report_json(server, "--pareto", "--time-budget", "30")["pareto"]}
    assert fast["resnet18"]["recommendation"]["runs"] == ["cached-w2"]
    cheap = {f["model"]: f for f in report_json(server, "--pareto", "--time-budget", "40")["pareto"]}
    assert cheap["resnet18"]["recommendation"]["runs"] == ["cached-w2-5w"]
    assert {f["model"]: f["recommendation"] for f in report_json(server, "--pareto")["pareto"]}["resnet18"] is None
    # a synthetic-input pass is no way to train: never on the front
    assert [p["runs"] for p in fronts["alexnet"]["points"]] == [["mixed"]]
    assert any("mixed-synthetic" not in n and "synthetic-input pass" in n for n in result["notes"])


def test_budget_without_pareto_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--power-budget", "5"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--power-budget and --time-budget need --pareto" in err
    with pytest.raises(SystemExit) as exc:
        main(["--storage-bps", "-1"])
    assert exc.value.code == 2


def stats(**means):
    return {name: {"mean": value, "std": None} for name, value in means.items()}


@pytest.mark.parametrize("means, expected", [
    # no split from the trainer: storage only where the disk was busy on an uncached dataset
    (dict(e2e_seconds=10.0, fetch_stall_seconds=5.0, disk_utilisation_ratio=0.8,
          page_cache_lowest_ratio=0.2), "storage"),
    (dict(e2e_seconds=10.0, fetch_stall_seconds=5.0, disk_utilisation_ratio=0.1,
          page_cache_lowest_ratio=0.2), "mixed"),
    (dict(e2e_seconds=10.0, fetch_stall_seconds=5.0), "mixed"),
    # reads timed slow while the disk rested on a cached dataset: not storage
    (dict(e2e_seconds=10.0, fetch_stall_seconds=5.0, fetch_stall_storage_seconds=4.5,
          fetch_stall_preprocess_seconds=0.5, disk_utilisation_ratio=0.02, page_cache_lowest_ratio=1.0), "mixed"),
    # cached at the epoch's end only because the epoch read it all in: its reads found 5 %, storage it is
    (dict(e2e_seconds=10.0, fetch_stall_seconds=5.0, fetch_stall_storage_seconds=4.5,
          fetch_stall_preprocess_seconds=0.5, disk_utilisation_ratio=0.02, page_cache_ratio=1.0,
          page_cache_lowest_ratio=0.05), "storage"),
    (dict(e2e_seconds=None, fetch_stall_seconds=5.0), None),
    # a busy disk whose reads were mostly another process's: the run's own reads do not make it storage
    (dict(e2e_seconds=10.0, fetch_stall_seconds=5.0, disk_utilisation_ratio=0.8, page_cache_lowest_ratio=0.2,
          read_bytes_per_second=30e6, run_read_bytes_per_second=1e6), "mixed"),
    (dict(e2e_seconds=10.0, fetch_stall_seconds=5.0, disk_utilisation_ratio=0.8, page_cache_lowest_ratio=0.2,
          read_bytes_per_second=30e6, run_read_bytes_per_second=28e6), "storage"),
])
def test_diagnosis_without_the_split_or_against_the_disk(means, expected):
    bottleneck, evidence = diagnose(stats(**means))
    assert bottleneck == expected and evidence and "\n" not in evidence


def test_the_live_bottleneck_rule_uses_the_reports_thresholds():
    """run:edgescope_train_bottleneck:info (the run dashboard) classifies as diagnose() does."""
    import re

    import yaml

    from report import diagnosis
    from tests.stack.catalog import REPO
    rules = [r for g in yaml.safe_load((REPO / "prometheus" / "rules" / "recording.yml").read_text())["groups"]
             for r in g["rules"] if r.get("record") == "run:edgescope_train_bottleneck:info"]
    assert sorted(r["labels"]["bottleneck"] for r in rules) == ["compute", "mixed", "preprocessing", "storage"]
    numbers = {round(float(x), 6) for r in rules for x in re.findall(r"[<>]=? ([0-9.]+)", r["expr"])}
    assert numbers == {diagnosis.COMPUTE_BOUND_STALL_SHARE, diagnosis.DOMINANT_SHARE,
                       round(1 - diagnosis.DOMINANT_SHARE, 6)}


def test_the_evidence_says_when_the_disk_was_busy_with_something_else():
    _, evidence = diagnose(stats(e2e_seconds=10.0, fetch_stall_seconds=5.0, fetch_stall_storage_seconds=4.5,
                                 fetch_stall_preprocess_seconds=0.5, disk_utilisation_ratio=0.9,
                                 page_cache_lowest_ratio=0.0, read_bytes_per_second=30e6,
                                 run_read_bytes_per_second=3e6))
    assert evidence.endswith("reads 30.00 MB/s, the run's own reads 3.00 MB/s, the disk was busy with something "
                             "else (10% of its reads were the run's)")
    # a cached run's disk that hardly read at all was not busy with anything
    _, evidence = diagnose(stats(e2e_seconds=10.0, fetch_stall_seconds=0.5, disk_utilisation_ratio=0.01,
                                 page_cache_lowest_ratio=1.0, read_bytes_per_second=1e4, run_read_bytes_per_second=0.0))
    assert "something else" not in evidence and evidence.endswith("the run's own reads 0.00 MB/s")

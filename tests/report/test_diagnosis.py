"""Diagnosis, what-if and Pareto front through a real Prometheus holding the
diagnosis bench (tests/report/diagnosis_bench.py): each bottleneck class, the
what-if arithmetic against hand-computed figures, the prediction error where
the predicted configuration was measured, and the front with its recommendation."""
import time

import pytest

from report.cli import main
from report.diagnosis import diagnose
from report.whatif import add_what_ifs, predict
from tests.report.conftest import Server, backfilled
from tests.report.diagnosis_bench import RUNS, DiagnosisBench
from tests.report.test_report_prometheus import report_json


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


def test_what_if_arithmetic_and_the_measured_prediction_error(server):
    runs = by_run(report_json(server, "--storage-bps", "8e6"))
    cold = runs["cold-w2"]["what_if"]
    # cached: the loader's reads (54 s over 2 workers = 27 s) gone from the 30 s stall: 23 s, at the run's 6 W
    assert cold["dataset_cached"]["e2e_seconds"] == pytest.approx(23.0)
    assert cold["dataset_cached"]["energy_joules"] == pytest.approx(138.0)
    measured = cold["dataset_cached"]["measured"]
    assert measured["run_id"] == "cached-w2" and measured["e2e_seconds"] == pytest.approx(23.5)
    assert measured["e2e_error_ratio"] == pytest.approx((23.0 - 23.5) / 23.5)
    assert measured["energy_error_ratio"] == pytest.approx((138.0 - 6.4 * 23.5) / (6.4 * 23.5))
    # workers 2 -> 4, CPU count unknown (assumed enough): loader saves 10 / 2 * (1 - 1/2) = 2.5 s
    assert cold["workers_doubled"]["e2e_seconds"] == pytest.approx(47.5)
    assert "CPU count unknown" in cold["workers_doubled"]["basis"]
    assert "measured" not in cold["workers_doubled"]
    # storage at 8 MB/s instead of the measured disk's 4 MB/s at 90 % busy (4.44 MB/s while busy):
    # the loader's 27 s of reads -> 27 * 4.44 / 8 = 15 s
    assert cold["storage_bps=8e+06"]["e2e_seconds"] == pytest.approx(38.0)
    assert cold["storage_bps=8e+06"]["energy_joules"] == pytest.approx(6.0 * 38.0)
    # preprocessing-bound, 4 CPUs: 76 / 2 * (1 - 1/2) = 19 s saved; pre-w4 measured it
    pre = runs["pre-w2"]["what_if"]["workers_doubled"]
    assert pre["e2e_seconds"] == pytest.approx(21.0) and pre["energy_joules"] == pytest.approx(105.0)
    assert pre["measured"]["run_id"] == "pre-w4"
    assert pre["measured"]["e2e_error_ratio"] == pytest.approx((21.0 - 22.0) / 22.0)
    # 4 workers on 4 CPUs: doubling them cannot speed preprocessing up
    assert runs["pre-w4"]["what_if"]["workers_doubled"]["e2e_seconds"] == pytest.approx(22.0)
    # reads 2 s over 4 workers: 0.5 s of the 0.6 s stall gone
    assert runs["gpu-bound"]["what_if"]["dataset_cached"]["e2e_seconds"] == pytest.approx(29.5)
    # mixed: reads 10 s over 2 workers, 5 s of its 8 s stall gone would be 15 s, below its synthetic-input
    # pass's 16 s epoch (the model's compute alone), which its compute gauge (11 s) would have let through
    mixed = runs["mixed"]["what_if"]["dataset_cached"]
    assert mixed["e2e_seconds"] == pytest.approx(16.0) and mixed["energy_joules"] == pytest.approx(80.0)
    assert "at the floor, the synthetic-input pass's epoch 16.00 s" in mixed["basis"]
    assert all(p["e2e_seconds"] is None and p["basis"] == "synthetic input: no loader to change"
               for p in runs["mixed-synthetic"]["what_if"].values())


def test_what_if_never_below_compute():
    record = dict(stats(e2e_seconds=10.0, fetch_stall_seconds=6.0, compute_seconds=7.0, read_seconds=20.0,
                        preprocess_seconds=1.0, average_power_watts=2.0), configuration={"workers": "2"})
    cached = predict(record, None)["dataset_cached"]
    assert cached["e2e_seconds"] == 7.0 and cached["energy_joules"] == 14.0  # not 10 - 6 = 4 s
    assert cached["basis"].endswith("at the floor, its compute 7.00 s")
    assert predict(record, None, synthetic_e2e=8.0)["dataset_cached"]["e2e_seconds"] == 8.0
    assert predict(record, None, synthetic_e2e=6.0)["dataset_cached"]["e2e_seconds"] == 7.0  # the higher floor
    # a synthetic pass slower than the run itself is noise, not a floor: no prediction above the measured epoch
    assert predict(record, None, synthetic_e2e=11.0)["dataset_cached"]["e2e_seconds"] == 7.0


def test_the_floor_comes_from_the_synthetic_pass_of_the_same_setup_only():
    def run(run_id, torch_device, e2e, **configuration):
        record = stats(e2e_seconds=e2e, fetch_stall_seconds=6.0, compute_seconds=3.0, read_seconds=20.0,
                       preprocess_seconds=1.0, average_power_watts=2.0)
        record.update(run_id=run_id, device="nx", model="vgg11", torch_device=torch_device,
                      configuration=dict({"workers": "2", "batch_size": "16"}, **configuration))
        return record

    cold = run("cold", "cuda", 10.0, page_cache="evicted", profile_pass="cold")
    others = [run("syn-cpu", "cpu", 8.0, input="synthetic", profile_pass="synthetic"),
              run("syn-b32", "cuda", 7.0, input="synthetic", profile_pass="synthetic", batch_size="32")]
    add_what_ifs([cold] + others, None)
    assert cold["what_if"]["dataset_cached"]["e2e_seconds"] == 4.0  # 10 - 6: no matching pass, compute 3 s
    others.append(run("syn", "cuda", 5.0, input="synthetic", profile_pass="synthetic"))
    add_what_ifs([cold] + others, None)
    assert cold["what_if"]["dataset_cached"]["e2e_seconds"] == 5.0
    assert all("measured" not in p for p in others[-1]["what_if"].values())
    # a cached pass on the CPU measured another configuration than this CUDA run's
    others.append(run("cached-cpu", "cpu", 4.0, page_cache="warmed", profile_pass="cached"))
    add_what_ifs([cold] + others, None)
    assert "measured" not in cold["what_if"]["dataset_cached"]
    others.append(run("cached", "cuda", 4.5, page_cache="warmed", profile_pass="cached"))
    add_what_ifs([cold] + others, None)
    assert cold["what_if"]["dataset_cached"]["measured"]["run_id"] == "cached"


def test_doubling_workers_beyond_the_cpus_never_predicts_a_slower_epoch():
    """4 workers on 2 CPUs already preprocess 2 at a time: doubling them gains nothing, and loses nothing."""
    record = dict(stats(e2e_seconds=10.0, fetch_stall_seconds=4.0, compute_seconds=6.0, read_seconds=0.0,
                        preprocess_seconds=16.0, average_power_watts=2.0),
                  configuration={"workers": "4", "cpu_count": "2"})
    doubled = predict(record, None)["workers_doubled"]
    assert doubled["e2e_seconds"] == 10.0 and "1.00x" in doubled["basis"]
    record["configuration"]["cpu_count"] = "6"  # 4 at a time today, 6 with 8 workers: 1.5x
    assert predict(record, None)["workers_doubled"]["e2e_seconds"] == pytest.approx(10.0 - 16.0 / 4 * (1 - 1 / 1.5))
    record["torch_device"] = "cpu"  # training on the CPU keeps one busy: 5 for the loader, 4 at a time today
    doubled = predict(record, None)["workers_doubled"]
    assert doubled["e2e_seconds"] == pytest.approx(10.0 - 16.0 / 4 * (1 - 1 / 1.25))
    assert "6 CPUs, one of them training (torch_device cpu)" in doubled["basis"]


def test_plots_without_matplotlib_are_one_line(monkeypatch):
    import sys

    from report.cli import _plots
    from report.prom import ReportError
    monkeypatch.setitem(sys.modules, "report.plots", None)  # as on a core-only install: no matplotlib
    with pytest.raises(ReportError, match=r"^--plots and --format html need matplotlib .*pip install '\.\[report\]'$"):
        _plots()


def test_prediction_error_in_the_table(server, capsys):
    assert main(["--prometheus", server.url, "--since", repr(server.bench.base), "--until",
                 repr(server.bench.end)]) == 0
    out = capsys.readouterr().out
    line = [x for x in out.splitlines() if x.startswith("cold-w2") and "measured" in x]
    assert len(line) == 1 and "23.00 s / 138.0 J (measured 23.50 s: -2.1 %)" in line[0]


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

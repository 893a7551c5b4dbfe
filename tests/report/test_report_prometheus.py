"""edgescope-report against a real Prometheus holding the synthetic bench
(tests/report/scenario.py): epoch windows, energy against the counter's exact
integral, epoch-0 exclusion, the comparison, missing exporter data, unknown
runs, an unreachable server, all output formats and the plots."""
import csv
import io
import json
import os
import statistics
import subprocess
import sys
from typing import List

import pytest

from report.cli import main
from tests.report.scenario import NX_RUN, DISK_READ_RATES, READ_SIZE, interpolation_bound

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Energy tolerance: linear interpolation of the counter between 5 s scrapes at
# the two epoch edges, at most Δt²/8 · max|dP/dt| per edge (interpolation_bound:
# 2.1 J on the Nano's wave, 5.1 J on the NX's, i.e. < 1.8 % of an epoch). The
# epoch with the exporter restart has no energy: the energy between the last
# scrape and the restart is in no counter, so the report marks it missing.


def report_json(server, *args):
    bench = server.bench
    out = io.StringIO()
    sys_stdout = sys.stdout
    sys.stdout = out
    try:
        code = main(["--prometheus", server.url, "--since", repr(bench.base), "--until", repr(bench.end),
                     "--format", "json"] + list(args))
    finally:
        sys.stdout = sys_stdout
    assert code == 0
    return json.loads(out.getvalue())


def test_epoch_windows_and_trainer_numbers(bench_prometheus):
    bench = bench_prometheus.bench
    report = report_json(bench_prometheus)
    by_key = {(r["run_id"], r["epoch"]): r for r in report["epochs"]}
    assert set(by_key) == {(run_id, k) for run_id, run in bench.runs.items() for k in range(len(run["epochs"]))}
    for run_id, run in bench.runs.items():
        for k, (start, end, stall, compute, samples) in enumerate(run["epochs"]):
            r = by_key[(run_id, k)]
            assert r["device"] == run["device"]
            assert r["start_timestamp_seconds"] == pytest.approx(start, abs=1e-6)
            assert r["end_timestamp_seconds"] == pytest.approx(end, abs=1e-6)
            assert r["e2e_seconds"] == pytest.approx(end - start, abs=1e-9)
            assert r["fetch_stall_seconds"] == stall and r["compute_seconds"] == compute
            assert r["stall_share"] == pytest.approx(stall / (end - start))
            assert r["included_in_summary"] == (k >= 1)


def test_energy_matches_the_counter_within_tolerance(bench_prometheus):
    bench = bench_prometheus.bench
    report = report_json(bench_prometheus)
    checked = 0
    for r in report["epochs"]:
        if r["device"] == "orin-1":
            continue
        start, end = r["start_timestamp_seconds"], r["end_timestamp_seconds"]
        truth = bench.true_epoch_energy(r["device"], start, end)
        bound = interpolation_bound(r["device"]) + 1e-6
        if r["run_id"] == "run-nano-a" and r["epoch"] == 2:
            assert r["energy_joules"] is None and r["average_power_watts"] is None and r["energy_source"] is None
            continue
        assert r["energy_source"] == "exporter"
        assert abs(r["energy_joules"] - truth) <= bound
        assert abs(r["average_power_watts"] - truth / (end - start)) <= bound / (end - start)
        assert abs(r["energy_joules"] - truth) / truth < 0.02
        # the report's own bound: the counter at each edge lies between the scrape before it and the first one
        # a lag (1 s, no source info: one line more) after it; worst case, so well above the error itself
        assert abs(r["energy_joules"] - truth) <= r["energy_bound_joules"]
        checked += 1
    assert checked == 14
    assert "run run-nano-a on nano-1: energy missing for epoch 2 (the counter went down): the exporter's counter " \
        "cannot give it" in report["notes"]


def test_disk_rates_are_summed_over_disks_and_page_cache_is_read_at_epoch_end(bench_prometheus):
    bench = bench_prometheus.bench
    report = report_json(bench_prometheus)
    for r in report["epochs"]:
        if r["device"] == "orin-1":
            continue
        reads = sum(DISK_READ_RATES[r["device"]].values())
        assert r["read_iops"] == pytest.approx(reads, rel=1e-9)
        assert r["read_bytes_per_second"] == pytest.approx(reads * READ_SIZE, rel=1e-9)
        if r["run_id"] == "run-nx-b":
            assert r["page_cache_ratio"] is None  # two datasets watched, no data_dir to pick one
        else:
            assert r["page_cache_ratio"] == pytest.approx(bench.page_cache(r["run_id"], r["epoch"]))
    assert any("run-nx-b" in n and "page-cache ratio missing" in n for n in report["notes"])


def test_the_gpus_share_of_ram_is_read_at_epoch_end_and_missing_where_not_published(bench_prometheus):
    bench = bench_prometheus.bench
    report = report_json(bench_prometheus)
    for r in report["epochs"]:
        if r["device"] == "nx-1":
            assert r["gpu_memory_bytes"] == bench.gpu_memory(r["run_id"], r["epoch"])
        else:  # the Nano's exporter publishes none, the Orin's is not scraped: missing, never 0
            assert r["gpu_memory_bytes"] is None
    nx = [s for s in report["summary"] if s["device"] == "nx-1"][0]
    assert nx["gpu_memory_bytes"]["mean"] == pytest.approx(statistics.mean(
        bench.gpu_memory(nx["run_id"], r["epoch"]) for r in report["epochs"]
        if r["run_id"] == nx["run_id"] and r["epoch"] >= 1))


def test_summary_excludes_epoch_zero_and_is_configurable(bench_prometheus):
    bench = bench_prometheus.bench
    durations = [e[1] - e[0] for e in bench.runs[NX_RUN]["epochs"]]
    summary = {s["run_id"]: s for s in report_json(bench_prometheus)["summary"]}[NX_RUN]
    assert summary["epochs_included"] == [1, 2, 3]
    assert summary["e2e_seconds"]["mean"] == pytest.approx(statistics.mean(durations[1:]))
    assert summary["e2e_seconds"]["std"] == pytest.approx(statistics.stdev(durations[1:]))
    assert summary["e2e_seconds"]["mean"] != pytest.approx(statistics.mean(durations))
    for name in ("energy_joules", "average_power_watts", "read_iops", "page_cache_ratio"):
        assert summary[name]["mean"] is not None
    everything = {s["run_id"]: s for s in report_json(bench_prometheus, "--warmup-epochs", "0")["summary"]}
    assert everything[NX_RUN]["epochs_included"] == [0, 1, 2, 3]
    assert everything[NX_RUN]["e2e_seconds"]["mean"] == pytest.approx(statistics.mean(durations))


def test_comparison_has_one_row_per_device_model_configuration(bench_prometheus):
    bench = bench_prometheus.bench
    rows = report_json(bench_prometheus)["comparison"]
    keys = sorted((r["device"], r["model"], r["configuration"]["workers"]) for r in rows)
    assert keys == [("nano-1", "vgg11", "4"), ("nx-1", "vgg11", "2"), ("nx-1", "vgg11", "4"),
                    ("orin-1", "vgg11", "4")]
    nano = [r for r in rows if r["device"] == "nano-1"][0]
    assert nano["runs"] == ["run-nano-a", "run-nano-b"]  # repeats pool their epochs into one row
    assert nano["device_type"] == "nano" and nano["storage"] == "sd"
    pooled = [e[1] - e[0] for run in ("run-nano-a", "run-nano-b") for e in bench.runs[run]["epochs"][1:]]
    assert nano["epochs"] == len(pooled) == 6
    assert nano["e2e_seconds"]["mean"] == pytest.approx(statistics.mean(pooled))
    assert nano["e2e_seconds"]["std"] == pytest.approx(statistics.stdev(pooled))


def test_run_without_exporter_data_is_reported_with_the_rest_missing(bench_prometheus, capsys):
    bench = bench_prometheus.bench
    code = main(["--prometheus", bench_prometheus.url, "--since", repr(bench.base), "--until", repr(bench.end),
                 "--run", "run-orin-a", "--format", "table"])
    out, err = capsys.readouterr()
    assert code == 0
    assert "no exporter data for device 'orin-1'" in err and len(err.strip().splitlines()) == 1
    # one run: the tables say its id once, in their titles, then its three epochs and its summary
    assert "Per epoch (* = warm-up, left out of the means); every row: run run-orin-a, device orin-1" in out
    epoch_lines, summary = table_rows(out, "Per epoch"), table_rows(out, "Per run")
    assert len(epoch_lines) == 3 and len(summary) == 1
    assert all("missing" in line for line in epoch_lines + summary)
    assert epoch_lines[0].startswith("0*     12.40")  # its trainer numbers are there (epoch 0 E2E)
    report = report_json(bench_prometheus, "--run", "run-orin-a")
    assert {r["energy_joules"] for r in report["epochs"]} == {None}
    assert {r["read_iops"] for r in report["epochs"]} == {None}
    assert report["summary"][0]["energy_joules"] == {"mean": None, "std": None}
    assert report["summary"][0]["compute_seconds"]["mean"] is not None


def test_unknown_run_is_one_line_and_nonzero(bench_prometheus, capsys):
    bench = bench_prometheus.bench
    code = main(["--prometheus", bench_prometheus.url, "--since", repr(bench.base), "--until", repr(bench.end),
                 "--run", "run-nano-a", "--run", "no-such-run"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "unknown run 'no-such-run'" in err and "run-nano-a" not in err


def test_unreachable_prometheus_is_one_line_without_traceback(tmp_path):
    from tests.stack.harness import free_port
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run([sys.executable, "-m", "report.cli", "--prometheus",
                             "http://127.0.0.1:{}".format(free_port()), "--timeout", "2"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "unreachable" in result.stderr and "--prometheus" in result.stderr
    assert "Traceback" not in result.stderr


def test_formats_csv_markdown_table(bench_prometheus, capsys):
    bench = bench_prometheus.bench
    base = ["--prometheus", bench_prometheus.url, "--since", repr(bench.base), "--until", repr(bench.end)]
    assert main(base + ["--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 18
    orin = [r for r in rows if r["run_id"] == "run-orin-a"]
    assert orin and all(r["energy_joules"] == "" for r in orin)  # unknown is empty, never 0
    assert main(base + ["--format", "csv", "--section", "comparison"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 4 and "e2e_seconds_mean" in rows[0] and "e2e_seconds_std" in rows[0]
    assert main(base + ["--format", "markdown"]) == 0
    md = capsys.readouterr().out
    assert md.count("### ") == 4 and "| {} | nx-1 | 1 |".format(NX_RUN) in md
    assert main(base) == 0
    table = capsys.readouterr().out
    assert "Comparison: one row per configuration and way of measuring it, time and energy per epoch of its " \
        "workload (the samples epoch_samples says); common to all rows: batch_size=16 dataset=cifar10 " \
        "epoch_samples=50000 pin_memory=false prefetch_factor=2 torch_device=cuda; measured with timing=lazy" \
        in " ".join(table.split()) and " ± " in table
    compare = table_rows(table, "Comparison")
    nx_w2 = [line for line in compare if line.startswith("device nx-1") and "workers=2" in line]
    assert len(nx_w2) == 1 and "batch_size" not in nx_w2[0]  # rows show only what differs
    assert max(len(line) for line in table.splitlines()) <= 120


def table_rows(text: str, title: str) -> List[str]:
    """The lines under the rule of the text report's table whose title starts with ``title``."""
    block = text[text.index(title):].split("\n\n")[0].splitlines()
    rule = next(k for k, line in enumerate(block) if line.lstrip().startswith("---"))
    return block[rule + 1:]


def test_plots_are_written(bench_prometheus, tmp_path):
    bench = bench_prometheus.bench
    out = io.StringIO()
    sys_stdout, sys.stdout = sys.stdout, out
    try:
        code = main(["--prometheus", bench_prometheus.url, "--since", repr(bench.base), "--until",
                     repr(bench.end), "--plots", str(tmp_path / "plots"), "--format", "json"])
    finally:
        sys.stdout = sys_stdout
    assert code == 0
    for name in ("time_split", "energy_per_epoch", "power_over_run"):
        data = (tmp_path / "plots" / (name + ".png")).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000


def test_a_url_that_is_not_the_prometheus_api_is_one_line(bench_prometheus, capsys):
    code = main(["--prometheus", bench_prometheus.url + "/graph", "--run", "x"])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and err.count("\n") == 1
    assert "HTTP 404 without the Prometheus API's JSON" in err and "--prometheus" in err


def test_bad_time_flags_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--since", "yesterday"])
    assert exit_.value.code == 2 and "'yesterday' is not a time" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--since", "1h", "--until", "2h"])
    assert "--since must be before --until" in capsys.readouterr().err

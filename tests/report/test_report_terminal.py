"""The text report on a terminal: the reference method's columns by default, within 120 columns for the reference
sweep's six runs (experiment/plans/reference.yaml, the longest run ids a plan gives) and for the quick start's two
configurations; --columns picks others; csv, json, html and latex keep every column; the diagnosis reads as
sentences with each what-if's spread and, where the other configuration measured it, the error. The quick start's
page is loaded in headless Chromium."""
import csv
import io
import json
import subprocess
import sys

import pytest

from report import html_page
from report.cli import column_names
from report.collect import Collected
from report.render import COLUMNS, DEFAULT_COLUMNS, WIDTH, build, render, tables, text_table
from report.summary import FIELDS
from tests.report import synthetic
from tests.report.browser import loaded

REFERENCE_HEADINGS = [COLUMNS[n][0] for n in DEFAULT_COLUMNS]


def widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


def quick_start_report() -> dict:
    return synthetic.report(synthetic.two_configurations(power_replayed=False))


@pytest.mark.parametrize("runs", [synthetic.reference_runs, synthetic.two_configurations],
                         ids=["reference sweep", "quick start"])
def test_default_tables_show_the_reference_columns_within_120_columns(runs):
    text = render(synthetic.report(runs()), "table")
    assert widest(text) <= WIDTH
    for title in ("Per epoch", "Per run", "Comparison"):
        block = text[text.index(title):].split("\n\n")[0]
        heading = next(line for line in block.splitlines() if "E2E s" in line).split()
        assert " ".join(" ".join(REFERENCE_HEADINGS).split()) in " ".join(heading)
        assert "stall %" not in heading and "GPU" not in heading  # the other columns wait for --columns
    for run in runs():  # every run and every epoch is there
        assert run.run_id in text
    epochs = text[text.index("Per epoch"):text.index("Per run")]
    assert sum(line.lstrip().startswith(("0*", "1 ", "2 ", "3 ", "4 ", "5 ")) for line in epochs.splitlines()) \
        == sum(len(r.epochs) for r in runs())
    assert "bottleneck" in text[text.index("Per run"):]


def test_a_table_with_every_column_is_wider_than_the_terminal():
    """What the default saves: the same report with every column does not fit (the check above can fail)."""
    report = synthetic.report(synthetic.reference_runs())
    assert widest(render(report, "table", columns=list(FIELDS))) > WIDTH


def test_columns_picks_others_and_all_is_every_one():
    report = synthetic.report(synthetic.reference_runs())
    text = render(report, "table", columns=column_names("stall_share,gpu_memory_bytes"))
    heading = [line for line in text.splitlines() if "stall %" in line][0]
    assert "GPU mem MB" in heading and "E2E s" not in heading
    assert column_names("all") == list(FIELDS)
    with pytest.raises(Exception, match="not a list of columns: give all, or some of e2e_seconds,"):
        column_names("e2e,watts")


def test_csv_json_html_and_latex_keep_every_column():
    report = synthetic.report(synthetic.reference_runs())
    model = tables(report)  # what html and latex lay out
    assert model[0][1] == ["run", "device", "epoch"] + [COLUMNS[n][0] for n in FIELDS] + ["energy by"]
    epochs = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert set(FIELDS) <= set(epochs[0])
    assert set(FIELDS) <= set(json.loads(render(report, "json"))["epochs"][0])


def test_columns_with_a_format_that_keeps_every_column_is_one_line():
    done = subprocess.run([sys.executable, "-m", "report.cli", "--format", "csv", "--columns", "e2e_seconds"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("edgescope-report: error: --columns goes with --format table or markdown: csv holds "
                           "every column\n")


def test_the_diagnosis_says_why_and_each_what_if_with_its_spread_and_the_measured_error():
    text = render(quick_start_report(), "table")
    diagnosis = text[text.index("Diagnosis and what-if"):].split("\n\n")[0].splitlines()
    one = diagnosis.index(next(line for line in diagnosis if line.startswith("workers=1: ")))
    assert diagnosis[one] == ("workers=1: preprocessing-bound, E2E 4.70 ± 0.05 s an epoch (run "
                              "quickstart-20261207T120000-w1 on host)")
    assert diagnosis[one + 1].startswith("  why: stall 36% of E2E: 2% storage, 98% preprocessing")
    # each what-if with its bar (epochs 1-3 replayed with twice the workers: 3.05, 3.00, 3.15 s, spread 0.076 s
    # × Student t 1.32 for n=3, with the suite's 2 % model error: hypot(0.101, 0.061) = 0.12 s), against the
    # 2-worker run that measured it (3.15, 3.20, 3.25 s)
    what_ifs = [line for line in diagnosis[one + 2:] if line.startswith("  with ")][:3]
    assert what_ifs[0].startswith("  with the dataset cached: 4.69 ± 0.11 s / ")
    assert what_ifs[1].startswith("  with twice the workers / twice the workers, storage keeping up: 3.07 ± 0.12 s / ")
    assert "(measured 3.20 ± 0.05 s:" in what_ifs[1]
    # the suite's table has no compute_speedup: its bar is the spread alone, and its line says so
    assert what_ifs[2] == "  with compute 2x faster: 3.54 ± 0.07 s / 14.5 ± 0.3 J (not calibrated: its bar is the " \
        "epochs' spread alone)"
    assert any(line.startswith("workers=2: compute-bound, E2E 3.20 ± 0.05 s an epoch") for line in diagnosis)


def test_the_quick_start_page_in_chromium(tmp_path):
    """The page the quick start writes holds the tables with every column, the diagnosis with the error against
    the measured configuration, and fetches nothing."""
    report = synthetic.report(synthetic.two_configurations(power_replayed=False), warmup_epochs=1)
    page = tmp_path / "report.html"
    page.write_text(html_page.as_html(report), encoding="utf-8")
    dom, hosts = loaded(page)
    assert hosts == []
    assert dom.tables == [[headers] + rows for _, headers, rows in tables(report)]
    assert dom.tables[0][0][3:-1] == [COLUMNS[n][0] for n in FIELDS]
    diagnosis = dom.tables[3]
    cells = {row[0]: row for row in diagnosis[1:]}
    assert "(measured 3.20 ± 0.05 s: " in cells["quickstart-20261207T120000-w1"][diagnosis[0].index(
        "workers_doubled")]


def replayed_and_measured_pairs() -> list:
    """The quick start's pair with its demo power replayed, and the same pair measured on the board, whose
    2-worker run kept one epoch (under-measured)."""
    measured = synthetic.two_configurations(power_replayed=False)
    for run in measured:
        run.run_id = run.run_id.replace("quickstart", "measured")
        for epoch in run.epochs:
            epoch.run_id = run.run_id
    del measured[1].epochs[2:]
    return synthetic.two_configurations() + measured


def test_replayed_power_is_said_once_a_table_and_the_pareto_table_fits():
    """On a terminal replayed power is said once in a table's title, not beside every energy and power (html keeps
    those marks: test_replayed_power); the Pareto table lists the replayed points and the under-measured one, each
    by the knobs that differ, within 120 columns."""
    alone = render(synthetic.report(synthetic.two_configurations()), "table")
    assert "(replayed)" not in alone and widest(alone) <= WIDTH
    for title in ("Per epoch", "Per run"):
        block = " ".join(alone[alone.index(title):].split("\n\n")[0].split())
        assert block.count("power was replayed") == 1 and "every row: " in block
    report = build(Collected(runs=replayed_and_measured_pairs(), notes=[]), 1,
                   {"prometheus": "http://prometheus.example:9090", "pareto": True, "power_budget": 100.0})
    text = render(report, "table")
    assert widest(text) <= WIDTH, text
    epochs = text[text.index("Per epoch"):text.index("Per run")]
    assert "run quickstart-20261207T120000-w1, power was replayed" in epochs
    assert "run measured-20261207T120000-w1, power was measured" in epochs
    pareto = text[text.index("Pareto front per device"):].split("\n\n")[0]
    assert "common to all rows: batch_size=16 dataset=imagefolder" in " ".join(pareto.split())
    assert pareto.count("replayed power: off the front, never recommended") == 2
    assert "front (under-measured: one kept epoch, no spread to fit a budget on)" in pareto
    assert "configuration workers=1" in pareto.splitlines() and "configuration workers=2" in pareto.splitlines()


def test_one_run_of_wide_spreads_puts_each_spread_under_its_mean():
    """One run (nothing to put on a line of its own) whose mean ± std cells are too wide for one line."""
    run = synthetic.reference_runs()[0]
    report = synthetic.report([run])
    text = render(report, "table")
    assert widest(text) <= WIDTH
    summary = text[text.index("Per run"):].split("\n\n")[0].splitlines()
    assert " ".join(" ".join(summary[:2]).split()).endswith(
        "every row: run {}, device nano01, model vgg11, epochs 1,2,3,4,5".format(run.run_id))
    assert summary[-2].split()[:3] == ["1865.39", "652.89", "1209.29"] and summary[-1].split()[:2] == ["±", "11.66"]


def test_an_empty_table_says_so():
    """A Pareto front of no point (e.g. no run with energy): a line saying so, not headings over nothing."""
    assert text_table("Pareto front per device × model", ["device", "model", "E2E"], []) == [
        "Pareto front per device × model", "(none: the notes below say why)", ""]

"""The runner's sweep bar (with its ETA) appears on a terminal and not in a pipe; its log lines stay."""
import re

from tests.terminal import run_on_terminal


def test_the_sweep_shows_a_bar_with_an_eta_on_a_terminal_only(bench):
    code, shown = run_on_terminal(bench.cli_args(bench.plan()), bench.env(), str(bench.tmp), timeout=120)
    assert code == 0, shown
    assert "sweep:" in shown and "0/2" in shown and "2/2" in shown
    # after the first run, tqdm's [elapsed<remaining, rate] gives a time left: the ETA
    assert re.search(r"\| 1/2 \[\d\d:\d\d<\d\d:\d\d, ", shown), shown
    assert "edgescope-experiment: [2/2] " in shown and ": completed" in shown
    piped = bench.run(bench.plan())  # everything done: both skipped, and no bar
    assert piped.returncode == 0, piped.stderr
    assert "sweep:" not in piped.stdout and "\r" not in piped.stdout
    assert piped.stdout.count("done before, skipped") == 2

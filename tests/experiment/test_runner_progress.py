"""The runner's sweep bar (with its ETA) appears on a terminal and not in a pipe; its log lines stay."""
import re

from experiment.plan import load
from experiment.state import Journal
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


def test_a_journal_of_back_to_back_repeats_resumes_in_rounds(bench):
    """A sweep journalled when repeats ran back to back (b8 r0, b8 r1, then killed in b16 r0) resumes in rounds:
    the ids name the configuration and the repeat, so only what is not done runs, and the bar starts at 2/4."""
    plan = bench.plan(repeats=2, sweep__batch_size=[8, 16], sweep__power_mode=[None])
    ids = {(r.batch_size, r.repeat): r.run_id for r in load(plan).runs()}
    journal = Journal(str(bench.out))
    for done in ((8, 0), (8, 1)):
        journal.record(ids[done], "started", attempt=1, trainer_run_id=ids[done])
        journal.record(ids[done], "completed", attempt=1, trainer_run_id=ids[done])
    journal.record(ids[16, 0], "started", attempt=1, trainer_run_id=ids[16, 0])
    code, shown = run_on_terminal(bench.cli_args(plan), bench.env(jetson=False), str(bench.tmp), timeout=120)
    assert code == 0, shown
    said = re.findall(r"edgescope-experiment: \[(\d)/4\] (\S+): (done before|redoing|training)", shown)
    assert said == [("1", ids[8, 0], "done before"), ("2", ids[16, 0], "redoing"), ("2", ids[16, 0], "training"),
                    ("3", ids[8, 1], "done before"), ("4", ids[16, 1], "training")]
    trained = [s["argv"][s["argv"].index("--run-id") + 1] for s in bench.trainer_starts()]
    assert trained == [ids[16, 0] + "-a2", ids[16, 1]]
    assert "2/4" in shown and re.search(r"\| 3/4 \[\d\d:\d\d<\d\d:\d\d, ", shown), shown  # done before: not timed
    assert "0/4" not in shown and "1/4 [" not in shown

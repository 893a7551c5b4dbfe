"""A run id never reaches a path unescaped, and a checkpoint's run id passes the checks --run-id does; counts
that make the loader spin are refused at the flag."""
import os

import pytest
from hypothesis import given, settings, strategies as st

from trainer.checkpoint import resumed_run_id
from trainer.cli import parse_args
from trainer.errors import UsageError
from trainer.timeline import run_folder

RUN_IDS = st.text(alphabet=st.sampled_from("./%_ab\\\n\x00\x7f\u202e"), min_size=1, max_size=8) | st.sampled_from(
    ["..", ".", "../x", "a/b", "a_b", "a%2Fb", "%2E%2E", ".hidden"])


@settings(max_examples=300, deadline=None)
@given(first=RUN_IDS, second=RUN_IDS)
def test_each_run_id_has_a_folder_of_its_own_inside_the_directory(first, second):
    """`--run-id ..` wrote into the timeline directory's parent, and `a/b` and `a_b` shared a folder."""
    directory = os.path.join("T", "inner")
    folder = run_folder(directory, first)
    name = os.path.basename(folder)
    assert os.path.dirname(folder) == directory and name not in ("", ".", "..") and not name.startswith(".")
    assert os.path.normpath(folder) == folder and "\n" not in name and "\x00" not in name
    assert (run_folder(directory, second) == folder) == (first == second)


@pytest.mark.parametrize("run_id", ["a\nb", "nul\x00", "bell\x07", "\u202eevil", "", "  "])
def test_a_checkpoints_run_id_passes_the_checks_of_run_id(run_id):
    with pytest.raises(UsageError) as error:
        resumed_run_id({"run_id": run_id}, None, "ck")
    message = str(error.value)
    assert message.startswith("--resume: ck holds a run id no run can have (") and "\n" not in message
    assert "\x00" not in message and "\u202e" not in message
    assert resumed_run_id({"run_id": "run-1"}, None, "ck") == "run-1"


@pytest.mark.parametrize("flag, value", [("--prefetch-factor", "1000000000"), ("--workers", "20000"),
                                         ("--prefetch-factor", "0"), ("--workers", "-1")])
def test_loader_counts_past_their_range_are_one_line(flag, value):
    """torch queues prefetch factor x workers indices before the first batch: 10^9 spun for minutes."""
    with pytest.raises(UsageError, match="argument {}: {} must be a finite integer".format(flag, value)):
        parse_args([flag, value])

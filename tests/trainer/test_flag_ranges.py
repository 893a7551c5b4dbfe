"""Every numeric flag of edgescope-train and edgescope-dataset has a range that says why (trainer/flags.py):
a value outside it (--seed 200000000000000, --lr 1e308, --power-interval 1e300, --image-size 1000000,
--train-images 1000000000000, nan, inf) is one line naming the flag and the range, never a traceback from torch,
numpy or PIL; a value at the edge of a range runs."""
import contextlib
import io
import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from trainer import cli, datasets_cli

from .conftest import small_run_args

# flag: (lowest, highest, lowest excluded, integer); the trainer's flags, then edgescope-dataset's
TRAINER = {"--seed": (0, 2 ** 32 - 1, False, True), "--lr": (0, 1e4, False, False),
           "--momentum": (0, 1, False, False), "--power-interval": (0, 3600, True, False),
           "--image-size": (1, 4096, False, True)}
DATASET = {("cifar10", "--train-images"): (1, 1000000, False, True),
           ("cifar10", "--test-images"): (1, 200000, False, True),
           ("cifar10", "--seed"): (0, 2 ** 32 - 1, False, True),
           ("imagefolder", "--images"): (1, 20000000, False, True),
           ("imagefolder", "--image-size"): (1, 4096, False, True),
           ("imagefolder", "--classes"): (1, 100000, False, True),
           ("imagefolder", "--quality"): (1, 95, False, True)}


@st.composite
def outside(draw, ranges):
    key = draw(st.sampled_from(sorted(ranges)))
    low, high, excluded, integer = ranges[key]
    huge = st.integers(min_value=10 ** 19).map(lambda n: n * draw(st.sampled_from([1, -1])))
    if integer:
        value = draw(st.one_of(st.integers(max_value=low - (0 if excluded else 1)), st.integers(min_value=high + 1),
                               huge))
        return key, str(value)
    value = draw(st.one_of(st.floats(max_value=low, exclude_max=not excluded, allow_nan=False),
                           st.floats(min_value=high, exclude_min=True, allow_nan=False), huge,
                           st.sampled_from([math.nan, math.inf, -math.inf])).filter(
        lambda v: not low <= v <= high or (excluded and v == low)))
    return key, draw(st.sampled_from([repr(value), repr(value).upper()]))


def one_line(main, argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


@settings(max_examples=100, deadline=None)
@given(outside(TRAINER))
def test_every_trainer_flag_out_of_range_is_one_line_naming_its_range_and_why(flag_and_value):
    flag, value = flag_and_value
    code, err = one_line(cli.main, ["--data-dir", "/nonexistent", "--metrics-port", "-1", flag + "=" + value])
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("edgescope-train: argument {}: ".format(flag)) and " (" in err and "must be" in err, err


@settings(max_examples=100, deadline=None)
@given(outside(DATASET))
def test_every_dataset_flag_out_of_range_is_one_line_naming_its_range_and_why(kind_flag_and_value):
    (kind, flag), value = kind_flag_and_value
    code, err = one_line(datasets_cli.main, [kind, "--out", "/nonexistent", flag + "=" + value])
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("edgescope-dataset: argument {}: ".format(flag)) and "must be" in err, err


def test_the_highest_seed_and_learning_rate_run_and_a_diverged_loss_is_null(cifar_dir, tmp_path):
    """At the top of their ranges the run completes: --seed 2**32-1 seeds every epoch's order (it overflowed
    torch's generator at 200000000000000), and --lr 1e4 diverges to a NaN loss, written as null (strict JSON)."""
    args = small_run_args(cifar_dir, str(tmp_path)) + ["--seed", str(2 ** 32 - 1), "--lr", "1e4", "--epochs", "1"]
    assert cli.main(args) == 0
    with open(str(tmp_path / "results.jsonl")) as f:
        (record,) = [json.loads(line, parse_constant=lambda name: None) for line in f]
    assert record["loss"] is None or math.isfinite(record["loss"])


def test_a_label_given_twice_is_refused_naming_both_values():
    """The last one silently won: a plan or a script that set a label twice ran with the other value."""
    code, err = one_line(cli.main, ["--data-dir", "/nonexistent", "--label", "site=a", "--label", "rack=1",
                                    "--label", "site=b"])
    assert code == 2 and err.count("\n") == 1, err
    assert "argument --label: site given more than once (site=a, site=b); give each label once" in err


def test_a_path_with_a_newline_and_a_parent_that_is_a_file_is_one_line_naming_the_cause(cifar_dir, tmp_path):
    """`--results /etc/hostname/r.jsonl` said "File exists"; a newline in the path split the error in two."""
    (tmp_path / "hostname").write_text("board")
    results = str(tmp_path / "hostname" / "new\nfolder" / "r.jsonl")
    args = small_run_args(cifar_dir, str(tmp_path)) + ["--results", results]
    code, err = one_line(cli.main, args)
    assert code == 2 and err.count("\n") == 1, err
    assert "new\\nfolder" in err and "{} is not a folder; pick another --results".format(tmp_path / "hostname") in err


@pytest.mark.parametrize("label, why", [("__name__=x", "__name__ starts with __, which Prometheus reserves"),
                                        ("duration_s=3", "duration_s is a field of every --results record"),
                                        ("complete=yes", "complete is a field of every --results record"),
                                        ("start_time=0", "start_time is a field of every --results record")])
def test_a_label_never_shadows_a_record_field_or_a_reserved_name(label, why):
    code, err = one_line(cli.main, ["--data-dir", "/nonexistent", "--label", label])
    assert code == 2 and err.count("\n") == 1 and "argument --label" in err and why in err, err

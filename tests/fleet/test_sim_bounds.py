"""edgescope-fleet-sim's input, bounded: every numeric flag refuses nan, inf and out-of-range values in one line;
a trace that is not a regular file or is too large is one line, not a read that never ends; a newline in a
path or value stays escaped on that line."""
import contextlib
import io
import math
import os
import time

import pytest
from hypothesis import given, settings, strategies as st

from exporter.sources import tegrastats
from exporter.sources.base import SourceDown
from exporter.sources.tegrastats import TegrastatsSource, recorded_lines
from fleet import cli

# flag: (lowest, highest, lowest excluded)
RANGES = {"--devices": (1, cli.MAX_DEVICES, False), "--base-port": (0, 65535, False),
          "--line-interval": (0, 3600, True), "--jitter": (0, 1800, False), "--epochs": (1, 1000000, False),
          "--epoch-seconds": (0, cli.DAY, True), "--batch-seconds": (0.001, 3600, False),
          "--linger": (0, cli.DAY, False), "--duration": (0, cli.YEAR, False), "--seed": (-2 ** 63, 2 ** 63, False)}


def run(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, err.getvalue()


@st.composite
def out_of_range(draw):
    flag = draw(st.sampled_from(sorted(RANGES)))
    low, high, excluded = RANGES[flag]
    below = st.floats(max_value=low, exclude_max=not excluded, allow_nan=False)
    above = st.floats(min_value=high, exclude_min=True, allow_nan=False)
    huge = st.integers(min_value=10 ** 19).map(lambda n: n * draw(st.sampled_from([1, -1])))  # beyond any float
    value = draw(st.one_of(below, above, huge, st.sampled_from([math.nan, math.inf, -math.inf])).filter(
        lambda v: not low <= v <= high or (excluded and v == low)))  # -0.0 is not below 0
    return flag, draw(st.sampled_from([repr(value), repr(value).upper()]))  # as written: no rounding into range


@settings(max_examples=200, deadline=None)
@given(out_of_range())
def test_every_numeric_flag_refuses_nan_inf_and_out_of_range_in_one_line(flag_and_value):
    flag, value = flag_and_value
    code, err = run(["--duration", "1", flag, value])  # were it accepted, the simulator would stop after 1 s
    assert code == 2 and err.count("\n") == 1 and err.startswith("edgescope-fleet-sim: error: argument " + flag), err


@pytest.mark.parametrize("make", ["/dev/zero", "fifo", "folder"])
def test_a_trace_that_is_not_a_regular_file_is_one_line_at_once(tmp_path, make):
    path = {"/dev/zero": "/dev/zero", "fifo": str(tmp_path / "fifo"), "folder": str(tmp_path)}[make]
    if make == "fifo":
        os.mkfifo(path)  # no writer: opening it plainly would wait for ever
    started = time.monotonic()
    code, err = run(["--trace", path, "--duration", "1"])
    assert time.monotonic() - started < 5
    assert code == 2 and err.count("\n") == 1 and err.startswith("edgescope-fleet-sim: --trace " + path), err
    assert "regular file" in err or "Is a directory" in err


def test_a_trace_over_the_size_bound_is_refused_and_so_is_the_exporters_replay(tmp_path, monkeypatch):
    monkeypatch.setattr(tegrastats, "MAX_RECORDING_BYTES", 1 << 20)
    log = tmp_path / "huge.log"
    log.write_bytes(b"RAM 1/2MB\n" * ((1 << 20) // 10 + 1))
    code, err = run(["--trace", str(log), "--duration", "1"])
    assert code == 2 and err.strip() == "edgescope-fleet-sim: --trace {}: larger than 1 MiB; replay a part of it " \
                                        "(`head -n 100000`)".format(log), err
    with pytest.raises(ValueError, match="not a regular file"):
        recorded_lines("/dev/zero")
    source = TegrastatsSource(0.01, replay_file="/dev/zero")  # the exporter's replay reads through the same bound
    try:
        deadline, why = time.monotonic() + 5, ""
        while "not a regular file" not in why and time.monotonic() < deadline:
            time.sleep(0.05)
            with pytest.raises(SourceDown) as down:
                source.sample()
            why = str(down.value)
        assert why.startswith("replay file /dev/zero: not a regular file"), why
    finally:
        source.close()


@pytest.mark.parametrize("args, start", [
    (["--trace", "/nonexistent/a\nb.log"], "edgescope-fleet-sim: --trace /nonexistent/a\\nb.log: "),
    (["--listen", "a\nb"], "edgescope-fleet-sim: error: --listen a\\nb: "),
    (["--devices", "1", "--base-port", "0", "--targets-file", "/nonexistent/a\nb/t.yml"],
     "edgescope-fleet-sim: cannot write --targets-file /nonexistent/a\\nb/t.yml: "),
], ids=["trace", "listen", "targets-file"])
def test_a_newline_in_a_path_or_value_stays_on_the_errors_one_line(args, start):
    code, err = run(args + ["--duration", "1"])
    assert code == 2 and err.count("\n") == 1 and err.startswith(start), err

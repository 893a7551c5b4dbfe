"""The tegrastats parser on real lines of every generation, and the source in both modes."""
import os
import stat
import time

import pytest

from exporter.energy import board_from_rails
from exporter.sources.base import SourceDown
from exporter.sources.tegrastats import MAX_LINE, BadLine, TegrastatsSource, next_backoff, parse_line
from tests.exporter.conftest import tegrastats_lines

LINES = tegrastats_lines()
MIB = 1024 * 1024


def test_fixture_has_every_generation():
    assert set(LINES) >= {"nano_jp4_nonroot", "nano_jp4_root", "tx2_jp4", "agx_xavier_jp4", "xavier_nx_jp5",
                          "orin_nano_jp6_busy", "agx_orin_jp6_nc", "agx_orin_jp7"}


def test_jetpack4_nano_nonroot_pom_rails():
    st = parse_line(LINES["nano_jp4_nonroot"])
    assert st.rails_w == {"POM_5V_IN": 0.9, "POM_5V_GPU": 0.0, "POM_5V_CPU": 0.123}
    assert board_from_rails(st.rails_w)[:2] == (0.9, "POM_5V_IN")
    assert st.cpu_busy == [0.02, 0.01, 0.0, 0.0]
    assert st.gpu_busy == 0.0 and st.emc_busy == 0.0 and st.emc_hz is None  # non-root: no @freq
    assert st.temps_c == {"PLL": 39.0, "CPU": 40.5, "GPU": 41.0, "AO": 46.0, "thermal": 41.0}  # PMIC@100C dropped
    assert (st.ram_used, st.ram_total, st.swap_used, st.swap_total) == (613 * MIB, 3964 * MIB, 0, 1982 * MIB)


def test_jetpack4_root_frequencies_and_iram_not_a_rail():
    st = parse_line(LINES["nano_jp4_root"])
    assert "IRAM" not in st.rails_w and "RAM" not in st.rails_w
    assert st.emc_busy == 0.10 and st.emc_hz == 1600e6
    assert st.rails_w["POM_5V_IN"] == 4.52


def test_tx2_offline_cores_and_unitless_vdd_in():
    st = parse_line(LINES["tx2_jp4"])
    assert st.cpu_busy == [0.02, None, None, None, None, None]
    assert board_from_rails(st.rails_w)[:2] == (2.003, "VDD_IN")
    assert st.rails_w["VDD_DDR"] == 0.24


def test_agx_xavier_bare_rails_sum_to_board():
    st = parse_line(LINES["agx_xavier_jp4"])
    assert st.rails_w == {"GPU": 0.0, "CPU": 0.216, "SOC": 0.864, "CV": 0.0, "VDDRQ": 0.144, "SYS5V": 1.889}
    watts, rail, others = board_from_rails(st.rails_w)
    assert rail == "sum" and watts == pytest.approx(0.216 + 0.864 + 0.144 + 1.889)
    assert st.temps_c["CPU"] == 33.5 and len(st.cpu_busy) == 8


def test_jetpack5_timestamp_milliwatts_and_bracketed_gpu_freq():
    st = parse_line(LINES["xavier_nx_jp5"])
    assert st.rails_w == {"VDD_IN": 2.763, "VDD_CPU_GPU_CV": 0.65, "VDD_SOC": 0.65}  # instantaneous, not 2846 avg
    assert st.gpu_busy == 0.0 and st.emc_busy == 0.02 and st.emc_hz == 204e6
    assert st.cpu_busy[0] == 0.23 and st.temps_c["AO"] == 45.0


def test_jetpack6_lower_case_sensors():
    st = parse_line(LINES["orin_nano_jp6_busy"])
    assert st.temps_c == {"cpu": 57.125, "soc2": 55.093, "soc0": 56.625, "gpu": 58.625, "tj": 58.312, "soc1": 55.937}
    assert st.gpu_busy == 0.99 and st.rails_w["VDD_IN"] == 16.321


def test_nc_rails_and_offline_sensors_left_out():
    st = parse_line(LINES["agx_orin_jp6_nc"])
    assert "NC" not in st.rails_w
    assert set(st.rails_w) == {"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"}
    assert not any(k in st.temps_c for k in ("CV0", "CV1", "CV2", "GPU"))  # all -256C
    assert st.temps_c["tj"] == 44.343
    assert board_from_rails(st.rails_w)[1] == "sum"


def test_jetpack7_triple_milliwatts_and_slash_temperatures():
    st = parse_line(LINES["agx_orin_jp7"])
    assert st.rails_w == {"VDD_GPU_SOC": 2.792, "VDD_CPU_CV": 0.0, "VIN_SYS_5V0": 3.918}
    assert st.temps_c["cpu"] == 43.093 and st.temps_c["tj"] == 42.906
    assert st.cpu_busy == [0.0, None] and st.swap_used is None


def _replay_file(tmp_path, lines):
    path = tmp_path / "replay.log"
    path.write_text("# comment lines and blank lines are skipped\n\n" + "\n".join(lines) + "\n")
    return str(path)


def _wait_for_line(src, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return src.sample()
        except SourceDown:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def test_replay_loops_and_integrates_energy(tmp_path):
    a, b = LINES["nano_jp4_nonroot"], LINES["nano_jp4_root"]
    src = TegrastatsSource(0.05, _replay_file(tmp_path, [a, b]))
    try:
        _wait_for_line(src)
        time.sleep(0.6)  # ~12 lines: the 2-line file has looped
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in src.sample()}
    finally:
        src.close()
    energy = samples[("edgescope_board_energy_joules_total", ())]
    # every interval is ~0.05 s at 0.9 W or 4.52 W: energy lies between the two bounds
    assert 0.9 * 0.4 < energy < 4.52 * 0.7
    info = (("board_rail", "POM_5V_IN"), ("fallback_from", ""), ("replay", "true"), ("source", "tegrastats"))
    assert samples[("edgescope_power_source_info", info)] == 1  # a demo log is never mistaken for a board
    assert ("edgescope_rail_power_watts", (("rail", "POM_5V_CPU"),)) in samples
    assert ("edgescope_rail_power_watts", (("rail", "POM_5V_IN"),)) not in samples  # it is the board


def _fake_tegrastats(tmp_path, body):
    path = tmp_path / "tegrastats"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_child_process_mode_reads_lines(tmp_path):
    line = LINES["orin_nano_jp6_busy"]
    cmd = _fake_tegrastats(tmp_path, '[ "$1" = --interval ] || exit 3\nwhile :; do echo "{}"; sleep 0.05; done\n'.format(line))
    src = TegrastatsSource(0.05, None, cmd)
    try:
        samples = _wait_for_line(src)
    finally:
        src.close()
    by = {(s.name, tuple(s.labels.values())): s.value for s in samples}
    assert by[("edgescope_board_power_watts", ())] == 16.321
    assert by[("edgescope_temperature_celsius", ("tj",))] == 58.312
    assert by[("edgescope_gpu_utilisation_ratio", ())] == 0.99


def test_child_that_exits_reports_why(tmp_path):
    cmd = _fake_tegrastats(tmp_path, 'echo "tegrastats: permission denied" >&2\nexit 1\n')
    src = TegrastatsSource(0.05, None, cmd)
    try:
        deadline = time.monotonic() + 5
        while True:
            with pytest.raises(SourceDown) as err:
                src.sample()
            if "exited" in str(err.value) or time.monotonic() > deadline:
                break
            time.sleep(0.02)
    finally:
        src.close()
    assert "exited with code 1: tegrastats: permission denied" in str(err.value)


def test_child_that_exits_is_started_again_with_backoff(tmp_path, monkeypatch):
    """A `tegrastats` on PATH that prints three lines and exits: the source restarts it and comes back up."""
    starts = tmp_path / "starts"
    line = LINES["orin_nano_jp6_busy"]
    _fake_tegrastats(tmp_path, 'echo x >> "{}"\nfor i in 1 2 3; do echo "{}"; sleep 0.05; done\n'
                               'echo "tegrastats: lost the PMIC" >&2\nexit 7\n'.format(starts, line))
    monkeypatch.setenv("PATH", "{}:{}".format(tmp_path, os.environ["PATH"]))
    src = TegrastatsSource(0.05, None, "tegrastats", max_backoff=0.4)
    reasons, ups = set(), 0
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (src.starts < 4 or ups < 2):
            try:
                src.sample()
                ups += 1
            except SourceDown as e:
                reasons.add(str(e))
            time.sleep(0.02)
        samples = _wait_for_line(src, timeout=10)
    finally:
        src.close()
    assert src.starts >= 4, "the child was not started again"
    assert starts.read_text().count("x") >= 3  # seen from the children's side too (the last may be stopped before it writes)
    assert "tegrastats exited with code 7: tegrastats: lost the PMIC" in reasons
    assert not any("again in" in r for r in reasons)  # the delay is logged, not in the reason
    by = {(s.name, tuple(s.labels.values())): s.value for s in samples}
    assert by[("edgescope_board_power_watts", ())] == 16.321  # power is back after the restarts


def test_backoff_doubles_while_the_child_keeps_failing_and_resets_after_a_healthy_run():
    waits, backoff = [], 0.0
    for _ in range(8):
        backoff = next_backoff(backoff, 0.1, 60.0)
        waits.append(backoff)
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]
    assert next_backoff(60.0, 3600.0, 60.0) == 1.0  # it ran for an hour: start again at once-ish


def test_missing_binary_is_a_reason_not_a_crash(tmp_path):
    src = TegrastatsSource(1.0, None, str(tmp_path / "no-such-tegrastats"))
    with pytest.raises(SourceDown, match="cannot run"):
        src.sample()
    src.close()


def test_demo_log_is_real_lines_warming_up():
    demo = os.path.join(os.path.dirname(__file__), "..", "..", "exporter", "demo", "tegrastats_nano_warming.log")
    with open(demo) as f:
        lines = [ln for ln in f if ln.strip() and not ln.startswith("#")]
    temps = [parse_line(ln).temps_c["CPU"] for ln in lines]
    assert temps == sorted(temps) and temps[0] == 25.0 and temps[-1] == 60.5
    assert sum(1 for t in temps if t >= 60) >= 30  # a hot stretch long enough for a 30 s alert
    known = set(tegrastats_lines().values())
    assert {ln.strip() for ln in lines if "CPU@40.5C" in ln or "CPU@60.5C" in ln} <= known


def test_overlong_line_is_refused_before_any_regex():
    with pytest.raises(BadLine, match="longer than 4096"):
        parse_line("CPU [ " * 40000)  # 240 KB: quadratic in the old CPU regex (52 s)
    st = parse_line(("CPU [ " * 1000)[:MAX_LINE])  # the longest allowed line of it parses to nothing
    assert st.cpu_busy == [] and st.rails_w == {}


def test_a_400_digit_number_becomes_a_float_not_an_exception():
    huge = "9" * 400
    st = parse_line(LINES["nano_jp4_nonroot"].replace("RAM 613/", "RAM {}/".format(huge))
                    .replace("CPU@40.5C", "CPU@{}C".format(huge)))
    assert st.ram_used == float("inf") and st.temps_c["CPU"] == float("inf")  # dropped at the exposition boundary
    with pytest.raises(BadLine, match="rail power above"):
        parse_line(LINES["nano_jp4_nonroot"].replace("POM_5V_CPU 123/", "POM_5V_CPU {}/".format(huge)))


def test_negative_input_rail_rejects_the_line():
    line = LINES["xavier_nx_jp5"]
    bad = line.replace("VDD_IN 2763mW", "VDD_IN -2763mW")
    assert bad != line
    with pytest.raises(BadLine, match="negative rail power"):
        parse_line(bad)


def samples_by_key(samples):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}


def test_bad_lines_are_rejected_with_a_reason_and_the_reader_goes_on(tmp_path):
    good = LINES["xavier_nx_jp5"]
    no_input = good.replace(" VDD_IN 2763mW/2846mW", "")  # would otherwise switch the board to the sum of rails
    assert no_input != good
    lines = [good, good.replace("VDD_IN 2763mW", "VDD_IN -2763mW"), no_input, "CPU [ " * 40000,
             good.replace("RAM ", "RAM " + "9" * 5000 + "/", 1)]
    expected = {"last tegrastats line rejected: negative rail power",
                "last tegrastats line rejected: input rail VDD_IN missing",
                "last tegrastats line rejected: line longer than 4096 characters"}
    src = TegrastatsSource(0.05, _replay_file(tmp_path, lines))
    reasons = set()
    good_samples = []
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (expected <= reasons and len(good_samples) >= 3):
            try:
                good_samples.append(samples_by_key(src.sample()))
            except SourceDown as e:
                reasons.add(str(e))
            time.sleep(0.01)
    finally:
        src.close()
    assert expected <= reasons, reasons
    assert not any("reading tegrastats failed" in r for r in reasons)  # the reader thread never died
    for got in good_samples:  # every exposed reading keeps VDD_IN as the board
        assert got[("edgescope_power_source_info", (("board_rail", "VDD_IN"), ("fallback_from", ""), ("replay", "true"),
                                                ("source", "tegrastats")))] == 1
        assert got[("edgescope_board_power_watts", ())] == 2.763

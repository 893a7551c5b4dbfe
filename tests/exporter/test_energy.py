"""Energy: the trapezoid integral on synthetic power traces with gaps, and hardware counters across wraparound and resets."""
import math

import pytest

from exporter.energy import MAX_PLAUSIBLE_WATTS, CounterEnergy, EnergyIntegrator, PowerMeter, board_from_rails, max_gap_for
from exporter.sources.nvml import NvmlSource
from exporter.sources.rapl import RaplSource
from tests.exporter.conftest import write


def test_constant_power_over_irregular_intervals():
    e = EnergyIntegrator()
    times = [0.0, 0.9, 2.0, 3.05, 4.0, 5.5]
    for t in times:
        e.add(t, 7.5)
    assert e.joules == pytest.approx(7.5 * 5.5, rel=1e-12)


def test_trapezoid_between_readings():
    e = EnergyIntegrator()
    trace = [(0.0, 100.0), (1.0, 2.0), (3.0, 5.0), (3.5, 10.0)]
    for t, p in trace:
        e.add(t, p)
    assert e.joules == pytest.approx((100 + 2) / 2 * 1.0 + (2 + 5) / 2 * 2.0 + (5 + 10) / 2 * 0.5, rel=1e-12)


def test_sine_trace_matches_the_closed_form_of_the_trapezoid_rule():
    e = EnergyIntegrator()
    dt, n = 0.01, 1000
    expected = 0.0
    last = None
    for i in range(n + 1):
        t = i * dt
        p = 5.0 + 3.0 * math.sin(t)
        e.add(t, p)
        if last is not None:
            expected += (last + p) / 2 * dt
        last = p
    assert e.joules == pytest.approx(expected, rel=1e-12)
    assert e.joules == pytest.approx(5.0 * 10 + 3.0 * (1 - math.cos(10.0)), rel=1e-5)  # trapezoid: O(dt^2) off


def test_non_increasing_time_adds_nothing():
    e = EnergyIntegrator()
    for t, p in [(5.0, 1.0), (5.0, 50.0), (4.0, 50.0), (6.0, 2.0)]:
        e.add(t, p)
    assert e.joules == pytest.approx((1.0 + 2.0) / 2 * 1.0)  # the repeated and the earlier readings are ignored


def test_outage_is_uncovered_not_credited_to_the_reading_after_it():
    """60 s of silence at 3 W, then one 15 W reading: ~0 J for the gap and 60 s uncovered, not 900 J."""
    interval = 1.0
    e = EnergyIntegrator(max_gap_for(interval))
    for i in range(11):
        e.add(float(i), 3.0)  # 10 s at 3 W
    before = e.joules
    assert before == pytest.approx(30.0) and e.uncovered_seconds == 0
    e.add(70.0, 15.0)  # the source was silent from 10 s to 70 s
    assert e.joules == pytest.approx(before)
    assert e.uncovered_seconds == pytest.approx(60.0)
    e.add(71.0, 15.0)  # after the gap, integration goes on from the new reading
    assert e.joules == pytest.approx(before + 15.0)


def test_gap_limit_is_three_intervals_and_at_least_a_second():
    assert max_gap_for(1.0) == 3.0 and max_gap_for(0.1) == 1.0
    e = EnergyIntegrator(max_gap_for(1.0))
    for t in (0.0, 3.0, 6.5):  # 3 s is integrated, 3.5 s is a gap
        e.add(t, 2.0)
    assert e.joules == pytest.approx(6.0) and e.uncovered_seconds == pytest.approx(3.5)


def test_power_meter_publishes_uncovered_seconds():
    m = PowerMeter("tegrastats", max_gap_for(1.0))
    for t, w in ((0.0, 3.0), (1.0, 3.0), (61.0, 15.0)):
        m.integrate(t, {"VDD_IN": w, "VDD_SOC": 1.0})
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in m.samples()}
    assert got[("edgescope_board_energy_joules_total", ())] == pytest.approx(3.0)
    assert got[("edgescope_board_energy_uncovered_seconds_total", ())] == pytest.approx(60.0)
    assert got[("edgescope_rail_energy_joules_total", (("rail", "VDD_SOC"),))] == pytest.approx(1.0)
    info = (("board_rail", "VDD_IN"), ("fallback_from", ""), ("replay", "false"), ("source", "tegrastats"))
    assert got[("edgescope_power_source_info", info)] == 1


def test_rapl_counter_wraparound():
    wrap = 262143328850  # a real max_energy_range_uj (Intel package domain)
    c = CounterEnergy(1e-6, wrap)
    c.add(wrap - 1_000_000)
    assert c.add(wrap - 400_000) == pytest.approx(0.6)
    assert c.add(250_000) == pytest.approx((400_000 + 250_000) * 1e-6)  # wrapped past the range
    assert c.joules == pytest.approx(0.6 + 0.65)


def test_nvml_counter_wraparound_at_64_bits():
    c = CounterEnergy(1e-3, 2 ** 64)
    c.add(2 ** 64 - 500)
    c.add(1500)
    assert c.joules == pytest.approx(2.0)


def test_counter_backwards_without_range_is_a_reset():
    c = CounterEnergy(1e-3)
    c.add(10_000, 0.0)
    assert c.add(5_000, 1.0) == 0.0 and c.reset and c.uncovered_seconds == 1.0
    assert c.add(7_000, 2.0) == pytest.approx(2.0) and not c.reset  # counts on from the new base
    assert c.joules == pytest.approx(2.0)


def test_counter_restart_is_not_a_wrap_when_the_wrap_is_impossible():
    """An NVML counter at 1 MJ that reads 200 kJ a second later restarted: a 2^64 mJ wrap is not 1 s of power."""
    c = CounterEnergy(1e-3, 2 ** 64, MAX_PLAUSIBLE_WATTS)
    c.add(1_000_000_000, 10.0)
    assert c.add(200_000_000, 11.0) == 0.0 and c.reset
    assert c.joules == 0.0 and c.uncovered_seconds == pytest.approx(1.0)
    # a RAPL counter just below its range that wraps within a second is a wrap
    wrap = 262143328850
    r = CounterEnergy(1e-6, wrap, MAX_PLAUSIBLE_WATTS)
    r.add(wrap - 5_000_000, 0.0)
    assert r.add(10_000_000, 1.0) == pytest.approx(15.0) and not r.reset
    # ... but one from mid-range to a low value in a second would need ~130 kW: a reset
    r.add(wrap // 2, 2.0)
    assert r.add(1_000_000, 3.0) == 0.0 and r.reset


def test_board_rule():
    assert board_from_rails({"VDD_IN": 5.0, "VDD_SOC": 1.0})[:2] == (5.0, "VDD_IN")
    assert board_from_rails({"POM_5V_IN": 4.0, "POM_5V_GPU": 1.0})[:2] == (4.0, "POM_5V_IN")
    assert board_from_rails({"GPU": 1.0, "CPU": 2.0})[:2] == (3.0, "sum")


def test_power_meter_has_no_series_before_a_reading():
    assert PowerMeter("x").samples() == []


def _rapl_tree(root, package_uj, dram_uj, wrap=262143328850):
    for zone, name, uj in (("intel-rapl:0", "package-0", package_uj), ("intel-rapl:1", "dram", dram_uj),
                           ("intel-rapl:0:0", "core", 0)):
        d = "class/powercap/{}/".format(zone)
        write(root, d + "name", name)
        write(root, d + "energy_uj", str(uj))
        write(root, d + "max_energy_range_uj", str(wrap))


def test_rapl_source_power_and_energy_across_wrap(tmp_path, monkeypatch):
    wrap = 1_000_000_000
    now = [50.0]
    monkeypatch.setattr("exporter.sources.rapl.time.monotonic", lambda: now[0])
    _rapl_tree(tmp_path, wrap - 10_000_000, 5_000_000, wrap)
    src = RaplSource(str(tmp_path))
    assert src.sample() == []  # one reading gives no power yet: no series rather than a fake zero
    now[0] = 52.0
    _rapl_tree(tmp_path, 20_000_000, 9_000_000, wrap)  # package wrapped: +30 J in 2 s; dram +4 J
    got = {(s.name, tuple(s.labels.values())): s.value for s in src.sample()}
    assert got[("edgescope_rail_power_watts", ("package-0",))] == pytest.approx(15.0)
    assert got[("edgescope_rail_power_watts", ("dram",))] == pytest.approx(2.0)
    assert ("edgescope_rail_power_watts", ("core",)) not in got  # sub-zone of the package
    assert got[("edgescope_board_power_watts", ())] == pytest.approx(17.0)
    assert got[("edgescope_board_energy_joules_total", ())] == pytest.approx(34.0)
    assert got[("edgescope_power_source_info", ("rapl", "sum", "false", ""))] == 1


class FakePynvml:
    """The pynvml calls the NVML source makes, with NVML's units (mW, mJ)."""

    def __init__(self, energy_mj, power_mw, energy_supported=True):
        self.energy, self.power, self.supported = energy_mj, power_mw, energy_supported

    def nvmlInit(self):
        pass

    def nvmlShutdown(self):
        pass

    def nvmlDeviceGetCount(self):
        return len(self.power)

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetPowerUsage(self, h):
        return self.power[h]

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if not self.supported:
            raise RuntimeError("NVML_ERROR_NOT_SUPPORTED")
        return self.energy[h]


def test_nvml_uses_the_hardware_energy_counter():
    nv = FakePynvml([1_000_000, 2_000_000], [250_000, 70_000])
    src = NvmlSource(nv)
    src.sample()
    nv.energy = [1_500_000, 2_070_000]
    got = {(s.name, tuple(s.labels.values())): s.value for s in src.sample()}
    assert got[("edgescope_rail_energy_joules_total", ("gpu0",))] == pytest.approx(500.0)
    assert got[("edgescope_rail_energy_joules_total", ("gpu1",))] == pytest.approx(70.0)
    assert got[("edgescope_board_energy_joules_total", ())] == pytest.approx(570.0)
    assert got[("edgescope_board_power_watts", ())] == pytest.approx(320.0)
    assert got[("edgescope_power_source_info", ("nvml", "sum", "false", ""))] == 1


def test_nvml_without_energy_counter_integrates_power(monkeypatch):
    now = iter([0.0, 2.0])
    monkeypatch.setattr("exporter.sources.nvml.time.monotonic", lambda: next(now))
    src = NvmlSource(FakePynvml([0], [100_000], energy_supported=False))
    src.sample()
    got = {s.name: s.value for s in src.sample()}
    assert got["edgescope_board_energy_joules_total"] == pytest.approx(200.0)


def test_nvml_counter_restart_is_uncovered_not_a_wrap(monkeypatch):
    now = iter([0.0, 1.0, 2.0, 3.0])
    monkeypatch.setattr("exporter.sources.nvml.time.monotonic", lambda: next(now))
    nv = FakePynvml([5_000_000], [250_000])
    src = NvmlSource(nv)
    src.sample()
    nv.energy = [5_250_000]
    src.sample()
    nv.energy = [100_000]  # the driver reloaded: the counter starts again near 0
    got = {s.name: s.value for s in src.sample()}
    assert got["edgescope_board_energy_joules_total"] == pytest.approx(250.0)  # not 2^64 mJ
    assert got["edgescope_board_energy_uncovered_seconds_total"] == pytest.approx(1.0)
    nv.energy = [350_000]
    got = {s.name: s.value for s in src.sample()}
    assert got["edgescope_board_energy_joules_total"] == pytest.approx(500.0)
    assert got["edgescope_board_energy_uncovered_seconds_total"] == pytest.approx(1.0)


def test_rapl_reset_gives_no_power_for_the_interval(tmp_path, monkeypatch):
    now = [0.0]
    monkeypatch.setattr("exporter.sources.rapl.time.monotonic", lambda: now[0])
    wrap = 262143328850
    _rapl_tree(tmp_path, 100_000_000_000, 5_000_000, wrap)
    src = RaplSource(str(tmp_path))
    src.sample()
    now[0] = 1.0
    _rapl_tree(tmp_path, 20_000_000, 6_000_000, wrap)  # package fell from 100 kJ to 20 J in 1 s: a reset
    assert src.sample() == []  # no fake zero (or 160 kW) power for that interval
    now[0] = 2.0
    _rapl_tree(tmp_path, 40_000_000, 7_000_000, wrap)
    got = {(s.name, tuple(s.labels.values())): s.value for s in src.sample()}
    assert got[("edgescope_rail_power_watts", ("package-0",))] == pytest.approx(20.0)
    assert got[("edgescope_board_energy_joules_total", ())] == pytest.approx(20.0 + 2.0)  # dram's 1 J before + 1 J after
    assert got[("edgescope_board_energy_uncovered_seconds_total", ())] == pytest.approx(1.0)

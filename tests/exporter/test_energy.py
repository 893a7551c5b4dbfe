"""Energy: the integral on synthetic power traces, and hardware counters across wraparound."""
import math

import pytest

from exporter.energy import CounterEnergy, EnergyIntegrator, PowerMeter, board_from_rails
from exporter.sources.nvml import NvmlSource
from exporter.sources.rapl import RaplSource
from tests.exporter.conftest import write


def test_constant_power_over_irregular_intervals():
    e = EnergyIntegrator()
    times = [0.0, 0.9, 2.0, 3.05, 4.0, 5.5]
    for t in times:
        e.add(t, 7.5)
    assert e.joules == pytest.approx(7.5 * 5.5, rel=1e-12)


def test_each_sample_weights_the_interval_that_ends_at_it():
    e = EnergyIntegrator()
    trace = [(0.0, 100.0), (1.0, 2.0), (3.0, 5.0), (3.5, 10.0)]  # the first sample only opens the window
    for t, p in trace:
        e.add(t, p)
    assert e.joules == pytest.approx(2.0 * 1.0 + 5.0 * 2.0 + 10.0 * 0.5, rel=1e-12)


def test_sine_trace_matches_the_closed_form_of_the_right_riemann_sum():
    e = EnergyIntegrator()
    dt, n = 0.01, 1000
    expected = 0.0
    for i in range(n + 1):
        t = i * dt
        p = 5.0 + 3.0 * math.sin(t)
        e.add(t, p)
        if i:
            expected += p * dt
    assert e.joules == pytest.approx(expected, rel=1e-12)
    assert e.joules == pytest.approx(5.0 * 10 + 3.0 * (1 - math.cos(10.0)), rel=1e-3)  # and near the true integral


def test_non_increasing_time_adds_nothing():
    e = EnergyIntegrator()
    for t, p in [(5.0, 1.0), (5.0, 50.0), (4.0, 50.0), (6.0, 2.0)]:
        e.add(t, p)
    assert e.joules == pytest.approx(2.0 * 2.0)


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


def test_counter_backwards_without_range_is_an_error():
    c = CounterEnergy(1e-3)
    c.add(10)
    with pytest.raises(ValueError, match="backwards"):
        c.add(5)


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
    assert got[("edgescope_power_source_info", ("rapl", "sum"))] == 1


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
    assert got[("edgescope_power_source_info", ("nvml", "sum"))] == 1


def test_nvml_without_energy_counter_integrates_power(monkeypatch):
    now = iter([0.0, 2.0])
    monkeypatch.setattr("exporter.sources.nvml.time.monotonic", lambda: next(now))
    src = NvmlSource(FakePynvml([0], [100_000], energy_supported=False))
    src.sample()
    got = {s.name: s.value for s in src.sample()}
    assert got["edgescope_board_energy_joules_total"] == pytest.approx(200.0)

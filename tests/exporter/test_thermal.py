"""Thermal/clock/throttle collector on a fake sysfs tree with the Jetson Orin layout."""
import pytest

from exporter.sources.base import SourceDown
from exporter.sources.thermal import ThermalSource
from tests.exporter.conftest import make_orin_sysfs, write


def by_key(samples):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}


def test_orin_tree(tmp_path):
    got = by_key(ThermalSource(make_orin_sysfs(tmp_path)).sample())
    zone = lambda z: ("edgescope_thermal_zone_temperature_celsius", (("zone", z),))  # noqa: E731
    assert got[zone("cpu-thermal")] == 48.562
    assert got[zone("tj-thermal")] == 49.312
    assert zone("cv0-thermal") not in got and zone("soc0-thermal") not in got  # unreadable / -256 C
    assert got[("edgescope_thermal_zone_trip_point_celsius",
                (("trip", "0"), ("trip_type", "passive"), ("zone", "cpu-thermal")))] == 99.0
    assert got[("edgescope_thermal_zone_trip_point_celsius",
                (("trip", "1"), ("trip_type", "critical"), ("zone", "cpu-thermal")))] == 104.5
    assert got[("edgescope_clock_frequency_hertz", (("clock", "cpu0"),))] == 1497600e3
    assert got[("edgescope_clock_frequency_min_hertz", (("clock", "cpu1"),))] == 729600e3
    assert got[("edgescope_clock_frequency_max_hertz", (("clock", "cpu1"),))] == 1510400e3
    assert got[("edgescope_clock_frequency_hertz", (("clock", "gpu"),))] == 306e6
    assert got[("edgescope_clock_frequency_max_hertz", (("clock", "gpu"),))] == 1020e6
    assert got[("edgescope_throttle_events_total", (("sensor", "oc2"),))] == 15
    assert got[("edgescope_throttle_events_total", (("sensor", "oc3"),))] == 37


def test_nano_gpu_devfreq_under_gpu0(tmp_path):
    d = "devices/gpu.0/devfreq/57000000.gpu/"
    for f, v in (("cur_freq", "921600000"), ("min_freq", "921600000"), ("max_freq", "921600000")):
        write(tmp_path, d + f, v)  # jetson_clocks pins min = max = cur
    got = by_key(ThermalSource(str(tmp_path)).sample())
    assert got[("edgescope_clock_frequency_hertz", (("clock", "gpu"),))] == 921.6e6
    assert got[("edgescope_clock_frequency_min_hertz", (("clock", "gpu"),))] == 921.6e6


def test_duplicate_zone_types_get_distinct_labels(tmp_path):
    for i in range(2):
        write(tmp_path, "class/thermal/thermal_zone{}/type".format(i), "thermal-fan-est")
        write(tmp_path, "class/thermal/thermal_zone{}/temp".format(i), str(40000 + i * 1000))
    got = by_key(ThermalSource(str(tmp_path)).sample())
    assert got[("edgescope_thermal_zone_temperature_celsius", (("zone", "thermal-fan-est_1"),))] == 41.0


def test_empty_tree_is_down_with_reason(tmp_path):
    with pytest.raises(SourceDown, match="no thermal zones"):
        ThermalSource(str(tmp_path)).sample()

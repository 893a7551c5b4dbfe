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
    assert got[("edgescope_clock_frequency_policy_max_hertz", (("clock", "cpu1"),))] == 1497600e3
    assert got[("edgescope_clock_frequency_hertz", (("clock", "gpu"),))] == 306e6
    assert got[("edgescope_clock_frequency_policy_max_hertz", (("clock", "gpu"),))] == 612e6  # devfreq max_freq
    assert got[("edgescope_clock_frequency_max_hertz", (("clock", "gpu"),))] == 1020e6  # highest available
    fan = (("cooling_device", "0"), ("type", "pwm-fan"))
    assert got[("edgescope_cooling_device_state", fan)] == 2
    assert got[("edgescope_cooling_device_max_state", fan)] == 10
    assert not any(k[0] == "edgescope_clock_frequency_mode_max_hertz" for k in got)  # no nvpmodel status here
    assert got[("edgescope_throttle_events_total", (("sensor", "oc2"),))] == 15
    assert got[("edgescope_throttle_events_total", (("sensor", "oc3"),))] == 37


def test_nano_gpu_devfreq_under_gpu0(tmp_path):
    d = "devices/gpu.0/devfreq/57000000.gpu/"
    for f, v in (("cur_freq", "921600000"), ("min_freq", "921600000"), ("max_freq", "921600000")):
        write(tmp_path, d + f, v)  # jetson_clocks pins min = max = cur
    got = by_key(ThermalSource(str(tmp_path)).sample())
    assert got[("edgescope_clock_frequency_hertz", (("clock", "gpu"),))] == 921.6e6
    assert got[("edgescope_clock_frequency_min_hertz", (("clock", "gpu"),))] == 921.6e6
    # no available_frequencies: max_freq is only the policy's cap, so no hardware maximum is published
    assert ("edgescope_clock_frequency_max_hertz", (("clock", "gpu"),)) not in got


def test_duplicate_zone_types_get_distinct_labels(tmp_path):
    for i in range(2):
        write(tmp_path, "class/thermal/thermal_zone{}/type".format(i), "thermal-fan-est")
        write(tmp_path, "class/thermal/thermal_zone{}/temp".format(i), str(40000 + i * 1000))
    got = by_key(ThermalSource(str(tmp_path)).sample())
    assert got[("edgescope_thermal_zone_temperature_celsius", (("zone", "thermal-fan-est_1"),))] == 41.0


def test_empty_tree_is_down_with_reason(tmp_path):
    with pytest.raises(SourceDown, match="no thermal zones"):
        ThermalSource(str(tmp_path)).sample()


def _set_cpu0(root, cur, floor, cap):
    d = "devices/system/cpu/cpu0/cpufreq/"
    for f, v in (("scaling_cur_freq", cur), ("scaling_min_freq", floor), ("scaling_max_freq", cap),
                 ("cpuinfo_max_freq", 1510400)):
        write(root, d + f, str(v))


def test_mode_cap_tells_a_power_mode_from_throttling(tmp_path):
    """jetson_clocks pins cpu0 in mode 0; a cooling device lowers the cap (the floor clamped with it),
    then nvpmodel switches to a mode with a lower cap: only the first is below the mode's cap."""
    status = tmp_path / "nvpmodel_status"
    status.write_text("pmode:0000 fmode:quiet\n")
    src = ThermalSource(str(tmp_path), str(status))
    mode_max = lambda: by_key(src.sample())[("edgescope_clock_frequency_mode_max_hertz", (("clock", "cpu0"),))]  # noqa: E731
    _set_cpu0(tmp_path, 1497600, 1497600, 1497600)  # pinned at the mode's cap
    assert mode_max() == 1497600e3
    _set_cpu0(tmp_path, 1113600, 1113600, 1113600)  # thermal cap: floor clamped down with it
    got = by_key(src.sample())
    assert got[("edgescope_clock_frequency_policy_max_hertz", (("clock", "cpu0"),))] == 1113600e3
    assert got[("edgescope_clock_frequency_mode_max_hertz", (("clock", "cpu0"),))] == 1497600e3  # still the mode's
    status.write_text("pmode:0001 fmode:quiet\n")  # nvpmodel -m 1: a lower cap is the new mode's own
    _set_cpu0(tmp_path, 1113600, 1113600, 1113600)
    assert mode_max() == 1113600e3
    _set_cpu0(tmp_path, 1344000, 1344000, 1344000)  # the mode's cap turns out higher once the cooling lifts
    assert mode_max() == 1344000e3
    status.unlink()  # mode unknown: a mode change and a thermal cap look alike, so nothing is published
    assert ("edgescope_clock_frequency_mode_max_hertz", (("clock", "cpu0"),)) not in by_key(src.sample())


def test_throttling_cooling_device_and_unreadable_fan(tmp_path):
    """Kernel layout of /sys/class/thermal/cooling_device*: a throttling device at step 3 of 7; a fan whose
    driver refuses cur_state is left out rather than read as 0."""
    for f, v in (("type", "cpufreq-cpu0"), ("cur_state", "3"), ("max_state", "7")):
        write(tmp_path, "class/thermal/cooling_device1/" + f, v)
    write(tmp_path, "class/thermal/cooling_device0/type", "pwm-fan")
    write(tmp_path, "class/thermal/cooling_device0/max_state", "10")  # cur_state missing
    got = by_key(ThermalSource(str(tmp_path)).sample())
    assert got[("edgescope_cooling_device_state", (("cooling_device", "1"), ("type", "cpufreq-cpu0")))] == 3
    assert got[("edgescope_cooling_device_max_state", (("cooling_device", "1"), ("type", "cpufreq-cpu0")))] == 7
    assert not any(k[1] and dict(k[1]).get("type") == "pwm-fan" for k in got)

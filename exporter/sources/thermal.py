"""Thermal throttling from sysfs (under a configurable root, /sys by default).

  class/thermal/thermal_zone*/type, temp (m°C), trip_point_N_temp (m°C), trip_point_N_type
  devices/system/cpu/cpu*/cpufreq/scaling_cur_freq, scaling_min_freq, cpuinfo_max_freq (kHz)
  GPU devfreq (Hz): class/devfreq/<gpu>/cur_freq, min_freq, max_freq, where <gpu> is the
      Jetson GPU node (17000000.ga10b or 17000000.gpu on Orin, 17000000.gv11b on Xavier,
      17000000.gp10b on TX2, 57000000.gpu on Nano; also reachable as devices/gpu.0/devfreq/*)
  class/hwmon/hwmon*/oc*_event_cnt where the hwmon's name is soctherm_oc (Orin's over-current
      and under-voltage throttle event counters)
While jetson_clocks pins the clocks, min == max == cur; throttling shows as cur < min.
A zone whose temp cannot be read (e.g. cv0 on Orin) or reads -256 °C is offline and left out.
"""
import glob
import os
import re
from typing import Dict, List, Tuple

from exporter.metrics import Sample
from exporter.sources.base import Source, SourceDown, read_number, read_text, sysfs

GPU_DEVFREQ_NAMES = re.compile(r"(gpu|ga10b|gv11b|gp10b|gm20b|gk20a)", re.I)
OFFLINE_MILLI = -256000
_TRIP = re.compile(r"^trip_point_(\d+)_temp$")
_OC = re.compile(r"^(oc\d+)_event_cnt$")


class ThermalSource(Source):
    name = "thermal"

    def __init__(self, sysfs_root: str = "/sys") -> None:
        self._root = sysfs_root

    def sample(self) -> List[Sample]:
        out = self._zones() + self._cpus() + self._gpu() + self._oc_events()
        if not out:
            raise SourceDown("no thermal zones, cpufreq, GPU devfreq or hwmon throttle counters under {}".format(self._root))
        return out

    def _zones(self) -> List[Sample]:
        out = []
        seen = {}  # type: Dict[str, int]
        zones = glob.glob(sysfs(self._root, "class", "thermal", "thermal_zone*"))
        for zone in sorted(zones, key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)) or 0)):
            try:
                kind = read_text(os.path.join(zone, "type"))
                milli = read_number(os.path.join(zone, "temp"))
            except (OSError, ValueError):
                continue  # offline sensor: temp unreadable
            if milli <= OFFLINE_MILLI:
                continue
            n = seen.get(kind, 0)
            seen[kind] = n + 1
            label = kind if n == 0 else "{}_{}".format(kind, n)
            out.append(Sample("edgescope_thermal_zone_temperature_celsius", {"zone": label}, milli / 1000.0))
            for name in sorted(os.listdir(zone)):
                m = _TRIP.match(name)
                if not m:
                    continue
                try:
                    trip_milli = read_number(os.path.join(zone, name))
                    trip_type = read_text(os.path.join(zone, "trip_point_{}_type".format(m.group(1))))
                except (OSError, ValueError):
                    continue
                out.append(Sample("edgescope_thermal_zone_trip_point_celsius",
                                  {"zone": label, "trip": m.group(1), "trip_type": trip_type}, trip_milli / 1000.0))
        return out

    def _clock(self, clock: str, files: Tuple[str, str, str], scale: float) -> List[Sample]:
        out = []
        for metric, path in zip(("edgescope_clock_frequency_hertz", "edgescope_clock_frequency_min_hertz",
                                 "edgescope_clock_frequency_max_hertz"), files):
            try:
                out.append(Sample(metric, {"clock": clock}, read_number(path) * scale))
            except (OSError, ValueError):
                continue
        return out

    def _cpus(self) -> List[Sample]:
        out = []
        for cpu in glob.glob(sysfs(self._root, "devices", "system", "cpu", "cpu[0-9]*")):
            d = os.path.join(cpu, "cpufreq")
            if os.path.isdir(d):
                files = tuple(os.path.join(d, f) for f in ("scaling_cur_freq", "scaling_min_freq", "cpuinfo_max_freq"))
                out += self._clock(os.path.basename(cpu), files, 1000.0)  # kHz
        return sorted(out, key=lambda s: (s.name, int(s.labels["clock"][3:])))

    def _gpu(self) -> List[Sample]:
        candidates = glob.glob(sysfs(self._root, "class", "devfreq", "*")) + \
            glob.glob(sysfs(self._root, "devices", "gpu.0", "devfreq", "*"))
        for path in sorted(set(os.path.realpath(p) for p in candidates)):
            if GPU_DEVFREQ_NAMES.search(os.path.basename(path)) and os.path.exists(os.path.join(path, "cur_freq")):
                files = tuple(os.path.join(path, f) for f in ("cur_freq", "min_freq", "max_freq"))
                return self._clock("gpu", files, 1.0)  # Hz
        return []

    def _oc_events(self) -> List[Sample]:
        out = []
        for hw in sorted(glob.glob(sysfs(self._root, "class", "hwmon", "hwmon*"))):
            try:
                if read_text(os.path.join(hw, "name")) != "soctherm_oc":
                    continue
                names = sorted(os.listdir(hw))
            except OSError:
                continue
            for name in names:
                m = _OC.match(name)
                if m:
                    try:
                        out.append(Sample("edgescope_throttle_events_total", {"sensor": m.group(1)},
                                          read_number(os.path.join(hw, name))))
                    except (OSError, ValueError):
                        continue
        return out

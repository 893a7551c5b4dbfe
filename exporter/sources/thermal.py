"""Thermal throttling from sysfs (under a configurable root, /sys by default).

  class/thermal/thermal_zone*/type, temp (m°C), trip_point_N_temp (m°C), trip_point_N_type
  class/thermal/cooling_device*/type, cur_state, max_state (the kernel's throttling steps;
      fans are cooling devices too, told apart by their type, e.g. pwm-fan)
  devices/system/cpu/cpu*/cpufreq/scaling_cur_freq, scaling_min_freq, scaling_max_freq,
      cpuinfo_max_freq (kHz)
  GPU devfreq (Hz): class/devfreq/<gpu>/cur_freq, min_freq, max_freq, available_frequencies,
      where <gpu> is the Jetson GPU node (17000000.ga10b or 17000000.gpu on Orin, 17000000.gv11b
      on Xavier, 17000000.gp10b on TX2, 57000000.gpu on Nano; also reachable as devices/gpu.0/devfreq/*)
  class/hwmon/hwmon*/oc*_event_cnt where the hwmon's name is soctherm_oc (Orin's over-current
      and under-voltage throttle event counters)
  /var/lib/nvpmodel/status: `pmode:NNNN`, the power mode nvpmodel last set

Three maxima per clock, so a power mode is not mistaken for throttling:
  hardware max  cpuinfo_max_freq; for the GPU the highest of available_frequencies
  policy max    scaling_max_freq / devfreq max_freq: what the kernel allows now, the
                lowest of the power mode's cap (nvpmodel writes it) and any thermal or
                over-current cap (a cooling device lowers it; the kernel then clamps the
                floor, scaling_min_freq, down with it)
  mode max      the highest policy max seen since the power mode was last set: the
                mode's own cap as the kernel applied it. It starts again at each mode
                change, so a mode that caps the clocks lowers it, a thermal cap does not.
                Absent where the nvpmodel status cannot be read (not a Jetson).
The policy max below the mode max is a cap nobody chose: throttling.
While jetson_clocks pins the clocks, min == max == cur.
A zone whose temp cannot be read (e.g. cv0 on Orin) or reads -256 °C is offline and left out.
"""
import glob
import os
import re
from typing import Dict, List, Optional, Tuple

from exporter.metrics import Sample
from exporter.sources.base import Source, SourceDown, read_number, read_text, sysfs

GPU_DEVFREQ_NAMES = re.compile(r"(gpu|ga10b|gv11b|gp10b|gm20b|gk20a)", re.I)
OFFLINE_MILLI = -256000
NVPMODEL_STATUS = "/var/lib/nvpmodel/status"
_TRIP = re.compile(r"^trip_point_(\d+)_temp$")
_OC = re.compile(r"^(oc\d+)_event_cnt$")
PMODE = re.compile(r"pmode:(\d+)")  # /var/lib/nvpmodel/status: the mode nvpmodel last set
CLOCK_METRICS = ("edgescope_clock_frequency_hertz", "edgescope_clock_frequency_min_hertz",
                 "edgescope_clock_frequency_policy_max_hertz")


def _number_index(path: str) -> int:
    return int(re.sub(r"\D", "", os.path.basename(path)) or 0)


class ThermalSource(Source):
    name = "thermal"

    def __init__(self, sysfs_root: str = "/sys", nvpmodel_status: str = NVPMODEL_STATUS) -> None:
        self._root = sysfs_root
        self._nvpmodel_status = nvpmodel_status
        self._mode = None  # type: Optional[str]
        self._mode_max = {}  # type: Dict[str, float]  (clock -> highest policy max under self._mode)

    def sample(self) -> List[Sample]:
        clocks = self._cpus() + self._gpu()
        out = self._zones() + self._cooling_devices() + clocks + self._mode_caps(clocks) + self._oc_events()
        if not out:
            raise SourceDown("no thermal zones, cpufreq, GPU devfreq or hwmon throttle counters under {}".format(self._root))
        return out

    def _zones(self) -> List[Sample]:
        out = []
        seen = {}  # type: Dict[str, int]
        zones = glob.glob(sysfs(self._root, "class", "thermal", "thermal_zone*"))
        for zone in sorted(zones, key=_number_index):
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

    def _cooling_devices(self) -> List[Sample]:
        out = []
        for dev in sorted(glob.glob(sysfs(self._root, "class", "thermal", "cooling_device*")), key=_number_index):
            try:
                labels = {"cooling_device": str(_number_index(dev)), "type": read_text(os.path.join(dev, "type"))}
                cur, top = (read_number(os.path.join(dev, f)) for f in ("cur_state", "max_state"))
            except (OSError, ValueError):
                continue  # some fan drivers refuse to report their state
            out += [Sample("edgescope_cooling_device_state", labels, cur),
                    Sample("edgescope_cooling_device_max_state", labels, top)]
        return out

    @staticmethod
    def _clock(clock: str, files: Tuple[str, str, str], scale: float, hw_max: Optional[float]) -> List[Sample]:
        """cur, min and policy max from `files` (in `scale` Hz units), and the hardware max where known."""
        out = []
        for metric, path in zip(CLOCK_METRICS, files):
            try:
                out.append(Sample(metric, {"clock": clock}, read_number(path) * scale))
            except (OSError, ValueError):
                continue
        if hw_max is not None:
            out.append(Sample("edgescope_clock_frequency_max_hertz", {"clock": clock}, hw_max))
        return out

    def _cpus(self) -> List[Sample]:
        out = []
        for cpu in glob.glob(sysfs(self._root, "devices", "system", "cpu", "cpu[0-9]*")):
            d = os.path.join(cpu, "cpufreq")
            if os.path.isdir(d):
                files = tuple(os.path.join(d, f) for f in ("scaling_cur_freq", "scaling_min_freq", "scaling_max_freq"))
                try:
                    hw_max = read_number(os.path.join(d, "cpuinfo_max_freq")) * 1000.0  # type: Optional[float]
                except (OSError, ValueError):
                    hw_max = None
                out += self._clock(os.path.basename(cpu), files, 1000.0, hw_max)  # kHz
        return sorted(out, key=lambda s: (s.name, int(s.labels["clock"][3:])))

    def _gpu(self) -> List[Sample]:
        candidates = glob.glob(sysfs(self._root, "class", "devfreq", "*")) + \
            glob.glob(sysfs(self._root, "devices", "gpu.0", "devfreq", "*"))
        for path in sorted(set(os.path.realpath(p) for p in candidates)):
            if GPU_DEVFREQ_NAMES.search(os.path.basename(path)) and os.path.exists(os.path.join(path, "cur_freq")):
                files = tuple(os.path.join(path, f) for f in ("cur_freq", "min_freq", "max_freq"))
                try:
                    hw_max = max(float(f) for f in read_text(os.path.join(path, "available_frequencies")).split())
                except (OSError, ValueError):
                    hw_max = None  # max_freq is the policy's cap, not the hardware's: publish none
                return self._clock("gpu", files, 1.0, hw_max)  # Hz
        return []

    def _power_mode(self) -> Optional[str]:
        try:
            m = PMODE.search(read_text(self._nvpmodel_status))
        except OSError:
            return None
        return m.group(1) if m else None

    def _mode_caps(self, clocks: List[Sample]) -> List[Sample]:
        """Each clock's power-mode cap: its highest policy max since nvpmodel last set the mode."""
        mode = self._power_mode()
        if mode != self._mode:
            self._mode, self._mode_max = mode, {}
        if mode is None:
            return []  # without the mode, a mode change and a thermal cap look alike: publish nothing
        out = []
        for s in clocks:
            if s.name == "edgescope_clock_frequency_policy_max_hertz":
                clock = s.labels["clock"]
                self._mode_max[clock] = max(self._mode_max.get(clock, 0.0), s.value)
                out.append(Sample("edgescope_clock_frequency_mode_max_hertz", {"clock": clock}, self._mode_max[clock]))
        return out

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

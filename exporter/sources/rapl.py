"""Intel RAPL through powercap sysfs: energy counters per package (and DRAM/psys).

Top-level zones /sys/class/powercap/intel-rapl:N carry `name` (package-0,
dram, psys), `energy_uj` and `max_energy_range_uj`; the counter wraps back to zero after
max_energy_range_uj, so a reading below the last one adds that range, unless
that increment is impossible in the elapsed time (more than MAX_PLAUSIBLE_WATTS):
then the counter was reset and the interval is counted as uncovered.
Sub-zones (intel-rapl:N:M, core/uncore) are parts of their package and are
left out so the sum is not double counted. Power is the counter's increase
over the sampling interval. The board is `psys` where the platform has it,
else the sum of the zones.
"""
import glob
import os
import re
import time
from typing import Dict, List, Optional

from exporter.energy import MAX_PLAUSIBLE_WATTS, CounterEnergy, PowerMeter
from exporter.metrics import Sample
from exporter.sources.base import Source, SourceDown, read_text, sysfs

_TOP_ZONE = re.compile(r"^intel-rapl:\d+$")


class RaplSource(Source):
    name = "rapl"

    def __init__(self, sysfs_root: str = "/sys") -> None:
        self._root = sysfs_root
        self._meter = PowerMeter(self.name)
        self._counters = {}  # type: Dict[str, CounterEnergy]
        self._last_t = None  # type: Optional[float]
        self._last_j = {}  # type: Dict[str, float]
        self._uncovered = 0.0

    def zones(self) -> Dict[str, str]:
        """zone name -> zone directory, top-level zones only."""
        found = {}
        for path in sorted(glob.glob(sysfs(self._root, "class", "powercap", "intel-rapl:*"))):
            if _TOP_ZONE.match(os.path.basename(path)):
                found[read_text(os.path.join(path, "name"))] = path
        return found

    def sample(self) -> List[Sample]:
        zones = self.zones()
        if not zones:
            raise SourceDown("no RAPL zones under {}".format(sysfs(self._root, "class", "powercap")))
        t = time.monotonic()
        joules = {}
        for name, path in zones.items():
            counter = self._counters.get(name)
            if counter is None:
                wrap = int(read_text(os.path.join(path, "max_energy_range_uj")))
                counter = self._counters[name] = CounterEnergy(1e-6, wrap, MAX_PLAUSIBLE_WATTS)
            try:
                counter.add(int(read_text(os.path.join(path, "energy_uj"))), t)
            except PermissionError:
                raise SourceDown("{}/energy_uj is readable by root only (run the exporter as root)".format(path))
            joules[name] = counter.joules
        first = self._last_t is None
        dt = 0.0 if first else t - self._last_t
        reset = any(c.reset for c in self._counters.values())
        if reset:
            self._uncovered += dt
        watts = {n: (j - self._last_j.get(n, j)) / dt if dt > 0 else 0.0 for n, j in joules.items()}
        self._last_t, self._last_j = t, joules
        if first or reset:
            return []  # power needs two readings of a running counter; no series rather than a fake zero
        if "psys" in joules:
            self._meter.count(watts, joules, "psys", watts["psys"], joules["psys"], self._uncovered)
        else:
            self._meter.count(watts, joules, uncovered_s=self._uncovered)
        return self._meter.samples()

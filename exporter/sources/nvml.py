"""NVML: power and the hardware energy counter of NVIDIA desktop/server GPUs.

Uses nvidia-ml-py (`import pynvml`), imported lazily so the exporter runs
without it. Per GPU: nvmlDeviceGetPowerUsage (mW) for the gauge and
nvmlDeviceGetTotalEnergyConsumption (mJ since the driver loaded; Volta and
later) for the energy counter. A GPU without the energy counter falls back to
integrating its power samples. Rails are `gpu0`, `gpu1`, ...; the board is
their sum (`board_rail="sum"`). The counter is 64-bit: a reading below the
last one is a restart (driver reload, GPU reset), never a wrap, since no GPU
draws 2^64 mJ in one interval; that interval is counted as uncovered.
"""
import time
from typing import Any, Dict, List, Optional

from exporter.energy import MAX_PLAUSIBLE_WATTS, CounterEnergy, EnergyIntegrator, PowerMeter, max_gap_for
from exporter.metrics import Sample
from exporter.sources.base import Source, SourceDown

NVML_ENERGY_WRAP = 2 ** 64  # unsigned long long millijoules


def load_pynvml() -> Any:
    try:
        import pynvml  # type: ignore
    except ImportError:
        raise SourceDown("nvidia-ml-py is not installed (pip install nvidia-ml-py)")
    return pynvml


class NvmlSource(Source):
    name = "nvml"

    def __init__(self, nvml: Optional[Any] = None, interval: float = 1.0) -> None:
        self._nvml = nvml
        self._max_gap = max_gap_for(interval)
        self._uncovered = 0.0
        self._last_t = None  # type: Optional[float]
        self._handles = None  # type: Optional[List[Any]]
        self._counters = {}  # type: Dict[str, CounterEnergy]
        self._integrators = {}  # type: Dict[str, EnergyIntegrator]
        self._meter = PowerMeter(self.name, self._max_gap)

    def _open(self) -> List[Any]:
        if self._handles is None:
            nv = self._nvml = self._nvml or load_pynvml()
            try:
                nv.nvmlInit()
                count = nv.nvmlDeviceGetCount()
            except Exception as e:  # NVMLError: no driver, no GPU
                raise SourceDown("NVML unavailable: {}".format(e))
            if count == 0:
                raise SourceDown("NVML found no GPU")
            self._handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        return self._handles

    def sample(self) -> List[Sample]:
        handles = self._open()
        nv = self._nvml
        t = time.monotonic()
        watts, joules = {}, {}
        uncovered = False  # a counter restarted or a power gap: this interval is missing from the board's sum
        for i, h in enumerate(handles):
            rail = "gpu{}".format(i)
            watts[rail] = nv.nvmlDeviceGetPowerUsage(h) / 1000.0
            try:
                raw = nv.nvmlDeviceGetTotalEnergyConsumption(h)
            except Exception:  # pre-Volta GPUs: NVML_ERROR_NOT_SUPPORTED
                integ = self._integrators.setdefault(rail, EnergyIntegrator(self._max_gap))
                gaps_before = integ.uncovered_seconds
                integ.add(t, watts[rail])
                uncovered = uncovered or integ.uncovered_seconds > gaps_before
                joules[rail] = integ.joules
                continue
            counter = self._counters.setdefault(rail, CounterEnergy(1e-3, NVML_ENERGY_WRAP, MAX_PLAUSIBLE_WATTS))
            counter.add(int(raw), t)
            uncovered = uncovered or counter.reset
            joules[rail] = counter.joules
        if uncovered and self._last_t is not None:
            self._uncovered += t - self._last_t
        self._last_t = t
        self._meter.count(watts, joules, uncovered_s=self._uncovered)
        return self._meter.samples()

    def close(self) -> None:
        if self._handles is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # already shut down
                pass
            self._handles = None

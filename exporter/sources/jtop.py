"""jtop (jetson-stats >= 4.3): the first choice on a Jetson.

Reads the jtop client's attributes, whose shapes (jetson-stats 4.3) are:
  power        {'rail': {NAME: {'power': mW, 'avg': mW, 'volt', 'curr', 'online', ...}},
                'tot': {'power': mW, 'avg': mW, 'name': 'VDD_IN'}}  ('name' absent when summed)
  temperature  {NAME: {'temp': C, 'online': bool}}  (-256 when offline)
  cpu          {'total': {...}, 'cpu': [{'online', 'freq': {'cur','min','max'} kHz, 'user','nice','system','idle' %}]}
  gpu          {NAME: {'type': 'integrated', 'status': {'load': %}, 'freq': {'cur','min','max'} kHz}}
  memory       {'RAM': {'tot','used','shared'} kB, 'SWAP': {'tot','used'} kB, 'EMC': {'cur','min','max'} kHz, 'val': %}
               ('shared': the GPU's share of the RAM, the kernel's NvMapMemUsed (jtop/core/memory.py); 0 where
               jtop has no source for it)
  fan          {NAME: {'speed': [%...], 'rpm': [...]}}
  nvpmodel     NVPModel object (.name) or None; jetson_clocks: object, truthy while running, or None
  board        {'hardware': {'Model', 'Module', 'L4T', 'Jetpack', ...}}
  uptime       timedelta: the board's uptime when jtop.service took the reading
               (jtop/jtop.py: timedelta(seconds=self._stats['uptime']))
The jtop client talks to jtop.service over /run/jtop.sock and refuses to run
when its major.minor version differs from the service's ("Mismatch version
jtop service: [A] and client: [B]", jtop/jtop.py start()): install the same
jetson-stats version the board's service runs. When the service restarts or
the socket is missing, the source reconnects with exponential backoff and
reports down meanwhile; the reason is the error alone (the delay is logged),
so a long outage stays one down-reason series.

Freshness: the reading's time is the service's `uptime`, not the moment we
read the client, so energy is integrated between the service's own reading
times and a reading seen twice (the service did not send a new one) adds
nothing. The gap limit follows the service's own interval (`jtop.interval`)
where it is slower than ours. A service that sends nothing new for longer
than the gap limit is reported down.
"""
import logging
import os
import time
from typing import Any, Callable, List, Optional

from exporter.energy import PowerMeter, max_gap_for
from exporter.metrics import Sample
from exporter.sources.base import Source, SourceDown

log = logging.getLogger(__name__)

JTOP_SOCKET = "/run/jtop.sock"
OFFLINE_CELSIUS = -256.0
KIB = 1024
VERSION_MISMATCH = "Mismatch version"  # how jtop's start() begins the client/service version error


def _import_jtop() -> Callable[..., Any]:
    try:
        from jtop import jtop  # type: ignore
    except ImportError:
        raise SourceDown("jetson-stats (jtop) is not installed: pip install 'edgescope[exporter]' on the Jetson")
    return jtop


class JtopSource(Source):
    name = "jtop"

    def __init__(self, interval: float, socket_path: str = JTOP_SOCKET,
                 factory: Optional[Callable[..., Any]] = None,
                 max_backoff: float = 60.0) -> None:
        self._interval = interval
        self._socket = socket_path
        self._factory = factory
        self._max_backoff = max_backoff
        self._client = None  # type: Any
        self._backoff = 0.0
        self._retry_at = 0.0
        self._last_error = ""
        self._max_gap = max_gap_for(interval)
        self._meter = PowerMeter(self.name, self._max_gap)
        self._last_reading = None  # type: Optional[float]  (service uptime of the last new reading)
        self._last_new_at = 0.0  # monotonic time that reading arrived

    # -- connection ---------------------------------------------------------
    def _connect(self) -> None:
        now = time.monotonic()
        if now < self._retry_at:
            raise SourceDown(self._last_error)
        try:
            if not os.path.exists(self._socket):
                raise SourceDown("jtop socket {} missing: is jtop.service running?".format(self._socket))
            factory = self._factory or _import_jtop()
            self._client = factory(interval=self._interval)
            self._client.start()
        except Exception as e:  # jtop raises JtopException for a dead service or a version mismatch
            self._fail(e)
        if self._backoff:
            log.info("jtop: reconnected to jtop.service")
        self._backoff = 0.0
        self._last_new_at = now  # a new connection gets a full gap limit to send its first new reading
        service_interval = getattr(self._client, "interval", None)  # the service's own pace (jtop.interval)
        if isinstance(service_interval, (int, float)) and service_interval > self._interval:
            self._max_gap = max_gap_for(service_interval)
            self._meter.set_max_gap(self._max_gap)

    def _fail(self, error: BaseException) -> None:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        self._backoff = min(self._max_backoff, self._backoff * 2 if self._backoff else 1.0)
        self._retry_at = time.monotonic() + self._backoff
        self._last_error = reason
        log.warning("jtop: %s; reconnecting in %.0fs", reason, self._backoff)
        self._drop()
        raise SourceDown(reason)

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # the service is already gone; nothing left to release
                pass

    # -- sampling -----------------------------------------------------------
    def sample(self) -> List[Sample]:
        if self._client is None:
            self._connect()
        try:
            if not self._client.ok(spin=True):
                raise SourceDown("jtop client stopped (jtop.service restarted?)")
            return self._read(self._client, self._reading_time(self._client))
        except Exception as e:
            self._fail(e)
            raise  # unreachable: _fail raises

    def _reading_time(self, j: Any) -> float:
        """When the service took the client's current reading, on a clock that only moves forward."""
        now = time.monotonic()
        uptime = getattr(j, "uptime", None)
        if uptime is None:  # a client without the service's time: our own clock, every reading new
            return now
        reading = uptime.total_seconds() if hasattr(uptime, "total_seconds") else float(uptime)
        if reading != self._last_reading:
            self._last_reading, self._last_new_at = reading, now
        elif now - self._last_new_at > self._max_gap:
            raise SourceDown("jtop.service sent no new reading for over {:g}s".format(self._max_gap))
        return reading

    def _read(self, j: Any, t: float) -> List[Sample]:
        out = []  # type: List[Sample]
        power = j.power or {}
        rails = {name: r["power"] / 1000.0 for name, r in power.get("rail", {}).items()
                 if r.get("online", True)}  # jtop already drops NC rails
        tot = power.get("tot")
        if tot is not None:
            board_rail = tot.get("name", "sum")
            self._meter.integrate(t, rails, tot["power"] / 1000.0, board_rail)
            out += self._meter.samples()
        for name, s in sorted((j.temperature or {}).items()):
            if s.get("online", True) and s["temp"] > OFFLINE_CELSIUS:
                out.append(Sample("edgescope_temperature_celsius", {"sensor": name}, float(s["temp"])))
        for i, core in enumerate((j.cpu or {}).get("cpu", [])):
            if core.get("online", True) and "idle" in core:
                out.append(Sample("edgescope_cpu_utilisation_ratio", {"cpu": "cpu{}".format(i)},
                                  (100.0 - core["idle"]) / 100.0))
        for gpu in (j.gpu or {}).values():
            if gpu.get("type") == "integrated" and "load" in gpu.get("status", {}):
                out.append(Sample("edgescope_gpu_utilisation_ratio", {}, gpu["status"]["load"] / 100.0))
                break
        mem = j.memory or {}
        for key, used_name, total_name in (("RAM", "edgescope_memory_used_bytes", "edgescope_memory_total_bytes"),
                                           ("SWAP", "edgescope_swap_used_bytes", "edgescope_swap_total_bytes")):
            if key in mem:
                out.append(Sample(used_name, {}, mem[key]["used"] * KIB))
                out.append(Sample(total_name, {}, mem[key]["tot"] * KIB))
        shared = mem.get("RAM", {}).get("shared")
        if isinstance(shared, (int, float)) and shared > 0:  # jtop's 0 means it found no source: absent, not 0
            out.append(Sample("edgescope_gpu_memory_bytes", {}, shared * KIB))
        emc = mem.get("EMC")
        if emc and emc.get("online", True):
            if "val" in emc:
                out.append(Sample("edgescope_emc_utilisation_ratio", {}, emc["val"] / 100.0))
            for key, metric in (("cur", "edgescope_clock_frequency_hertz"), ("min", "edgescope_clock_frequency_min_hertz"),
                                ("max", "edgescope_clock_frequency_max_hertz")):
                if key in emc:
                    out.append(Sample(metric, {"clock": "emc"}, emc[key] * 1000.0))
        for name, fan in sorted((j.fan or {}).items()):
            for i, speed in enumerate(fan.get("speed", [])):
                out.append(Sample("edgescope_fan_speed_ratio", {"fan": "{}{}".format(name, i)}, speed / 100.0))
        if j.nvpmodel is not None:
            out.append(Sample("edgescope_power_mode_info", {"mode": str(getattr(j.nvpmodel, "name", j.nvpmodel))}, 1.0))
        if j.jetson_clocks is not None:
            out.append(Sample("edgescope_jetson_clocks_enabled", {}, 1.0 if j.jetson_clocks else 0.0))
        hw = (j.board or {}).get("hardware", {})
        if hw:
            out.append(Sample("edgescope_board_info", {"model": hw.get("Model", ""), "module": hw.get("Module", ""),
                                                       "l4t": hw.get("L4T", ""), "jetpack": hw.get("Jetpack", "")}, 1.0))
        return out

    def close(self) -> None:
        self._drop()

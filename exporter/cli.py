"""edgescope-exporter: sample every source in the background and serve /metrics."""
import logging
import os
import shutil
import signal
import sys
import threading
import time
from typing import Any, Dict, List, Optional

from exporter.clock import ClockCollector
from exporter.config import ConfigError, load
from exporter.sampler import Sampler
from exporter.server import load_web_config, serve
from exporter.sources.base import Source, SourceDown, Unavailable
from exporter.sources.diskstats import DiskstatsSource
from exporter.sources.jtop import VERSION_MISMATCH, JtopSource
from exporter.sources.meminfo import MeminfoSource
from exporter.sources.nvml import NvmlSource, load_pynvml
from exporter.sources.pagecache import PagecacheSource
from exporter.sources.rapl import RaplSource
from exporter.sources.tegrastats import TegrastatsSource
from exporter.sources.thermal import ThermalSource

log = logging.getLogger("edgescope-exporter")


def _jtop_importable() -> bool:
    try:
        import jtop  # type: ignore  # noqa: F401
    except ImportError:
        return False
    return True


def _nvml_gpus() -> int:
    try:
        nv = load_pynvml()
        nv.nvmlInit()
        try:
            return nv.nvmlDeviceGetCount()
        finally:
            nv.nvmlShutdown()
    except Exception:  # no pynvml, no driver, no GPU: all mean "not this source"
        return 0


def _jtop_or_fallback(interval: float, socket_path: str, tegrastats_cmd: Optional[str]) -> List[Source]:
    """jtop, unless its client and service versions disagree and tegrastats is there to fall back on.

    A version mismatch does not heal by waiting (it needs a reinstall), so
    auto mode uses tegrastats instead, logs why, keeps jtop reported down with
    the mismatch as its reason, and labels the power source fallback_from="jtop".
    A service that is merely down keeps jtop, which reconnects when it is back.
    """
    jtop = JtopSource(interval, socket_path)
    try:
        jtop.sample()
    except SourceDown as e:
        if not str(e).startswith(VERSION_MISMATCH) or not tegrastats_cmd:
            return [jtop]
        jtop.close()
        log.warning("jtop: %s; falling back to tegrastats (install the jetson-stats version jtop.service runs)", e)
        return [Unavailable("jtop", "{} (falling back to tegrastats)".format(e)),
                TegrastatsSource(interval, None, tegrastats_cmd, fallback_from="jtop")]
    return [jtop]


def power_sources(cfg: Dict[str, Any]) -> List[Source]:
    """The power source the settings ask for; in auto mode the first that works.

    With nothing present, every candidate is reported down with the reason it
    was passed over, so /metrics says why there is no power.
    """
    choice, interval = cfg["power-source"], cfg["interval"]
    tegrastats_cmd = shutil.which("tegrastats")
    if choice == "none":
        return []
    if choice == "jtop":
        return [JtopSource(interval, cfg["jtop-socket"])]
    if choice == "tegrastats" or (choice == "auto" and cfg["tegrastats-file"]):
        if cfg["tegrastats-file"] or tegrastats_cmd:
            return [TegrastatsSource(interval, cfg["tegrastats-file"], tegrastats_cmd or "tegrastats")]
        return [Unavailable("tegrastats", "tegrastats not found on PATH (give --tegrastats-file to replay a log)")]
    if choice == "nvml":
        return [NvmlSource(interval=interval)]
    if choice == "rapl":
        return [RaplSource(cfg["sysfs-root"])]
    # auto
    if os.path.exists(cfg["jtop-socket"]) and _jtop_importable():
        return _jtop_or_fallback(interval, cfg["jtop-socket"], tegrastats_cmd)
    if tegrastats_cmd:
        return [TegrastatsSource(interval, None, tegrastats_cmd)]
    if _nvml_gpus():
        return [NvmlSource(interval=interval)]
    rapl = RaplSource(cfg["sysfs-root"])
    if rapl.zones():
        return [rapl]
    return [
        Unavailable("jtop", "no jtop.service socket at {} or jetson-stats not installed".format(cfg["jtop-socket"])),
        Unavailable("tegrastats", "tegrastats not found on PATH"),
        Unavailable("nvml", "no NVIDIA GPU reachable through NVML (driver and nvidia-ml-py)"),
        Unavailable("rapl", "no RAPL zones under {}/class/powercap".format(cfg["sysfs-root"])),
    ]


def build_sources(cfg: Dict[str, Any]) -> List[Source]:
    sources = power_sources(cfg)
    if not any(isinstance(s, JtopSource) for s in sources):  # jtop publishes the GPU's memory itself
        sources.append(MeminfoSource(cfg["procfs-root"]))
    sources += [DiskstatsSource(cfg["procfs-root"], cfg["disk-exclude"], cfg["sysfs-root"], cfg["dataset"]),
                ThermalSource(cfg["sysfs-root"])]
    if cfg["dataset"]:
        try:
            sources.append(PagecacheSource(cfg["dataset"], cfg["pagecache-interval"], cfg["pagecache-method"],
                                           cfg["pagecache-max-error"], cfg["pagecache-cpu-budget"]))
        except OSError as e:  # the method asked for is not available on this kernel
            sources.append(Unavailable("pagecache", e.strerror or str(e)))
    return sources


def main(argv: Optional[List[str]] = None) -> int:
    started = time.time()
    try:
        cfg = load(argv)
        web = load_web_config(cfg["web.config.file"]) if cfg["web.config.file"] else None
    except ConfigError as e:
        print("edgescope-exporter: {}".format(e), file=sys.stderr)
        return 2
    level = {"warn": "WARNING"}.get(cfg["log.level"], cfg["log.level"].upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sources = build_sources(cfg)
    sampler = Sampler(sources, cfg["interval"], cfg["source-timeout"])
    try:
        server = serve(cfg["web.listen-address"], sampler.snapshot, web)
    except ConfigError as e:
        sampler.stop()
        print("edgescope-exporter: {}".format(e), file=sys.stderr)
        return 2
    server.registry.register(ClockCollector(started))
    sampler.start()
    log.info("serving /metrics on %s (%s) with sources: %s", cfg["web.listen-address"],
             "https" if web and web.tls else "http", ", ".join(s.name for s in sources))
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    log.info("shutting down")
    server.shutdown()
    server.server_close()
    sampler.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

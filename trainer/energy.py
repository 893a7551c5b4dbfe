"""Board energy per epoch, read by the trainer itself at the epoch's edges.

The board's energy counter (``edgescope_board_energy_joules_total``) is read
when an epoch starts and when it ends; the epoch's energy is the difference
and its average power that divided by the time between the two reads. Being
read on the board, at the edges, it needs no clock agreement with the
monitoring host and no interpolation between scrapes. Two ways to read it:

- ``ExporterEnergy``: a plain HTTP(S) GET of the board exporter's /metrics
  (basic auth from ``user:pass@`` in the URL, TLS verified against the system
  CAs or a given CA file).
- ``InProcessEnergy``: no exporter; the exporter's own power source
  (``--power-source``) sampled every second in a background thread and at
  each edge: a hardware energy counter (RAPL, NVML) is read as the source
  counts it; a source of power readings (tegrastats, jtop) is integrated here
  with the exporter's trapezoid rule at every sample, the edges included, and
  a silence longer than the exporter's gap limit leaves the epoch unknown.

Each epoch's energy carries a bound (``EpochEnergy.bound_joules``) from how
it was taken. The exporter's counter is as of its last sample, so each edge
lags by up to the exporter's interval (``edgescope_exporter_interval_seconds``)
plus, for a source of power lines (tegrastats, jtop), one line interval: the
bound is the larger power read at the two edges times the sum of the two
lags. In-process a hardware counter (RAPL, NVML) is read at the edge itself
(its bound is its counting resolution); a power source that reports lines
gives the power of its last line, up to one ``--power-interval`` old at each
edge. The edges are not interpolated: the trainer reads at the edge itself,
and the exporter does not say when its counter last moved.
Where an epoch's energy cannot be known (a read failed, the counter went
backwards, the exporter restarted, the source was down or had a gap in its
power readings in between) it is None with a note saying why: never a wrong
number.
"""
import threading
import time
from typing import Any, Dict, Iterable, NamedTuple, Optional, Tuple, Union
from urllib.parse import urlsplit, urlunsplit

import requests
from prometheus_client.parser import text_string_to_metric_families

from exporter.energy import EnergyIntegrator, lag_for, max_gap_for

ENERGY = "edgescope_board_energy_joules_total"
UNCOVERED = "edgescope_board_energy_uncovered_seconds_total"
POWER = "edgescope_board_power_watts"
EXPORTER_START = "edgescope_exporter_start_time_seconds"
READ_TIMEOUT_S = 2.0
INTERVAL = "edgescope_exporter_interval_seconds"
SOURCE_INFO = "edgescope_power_source_info"
SAMPLE_INTERVAL_S = 1.0
# Sources whose power is a hardware energy counter's increments over the last interval: their own counter is
# exact; integrating that averaged power again would smear it over the next interval.
COUNTER_SOURCES = ("nvml", "rapl")
# Joules one count of a hardware counter is worth (NVML counts millijoules, RAPL microjoules).
RESOLUTION_J = {"nvml": 1e-3, "rapl": 1e-6}


class EnergyUnavailable(Exception):
    """A reading could not be taken; the message is the short reason."""


class Reading(NamedTuple):
    """The board's energy counter at one moment."""
    monotonic: float  # when it was read, on this process' monotonic clock
    joules: float
    watts: Optional[float]  # board power at the source's last sample
    # Changes when the count was broken: the exporter's start time (where it says) and its power source's
    # uncovered seconds (gaps in the power readings); in-process also the number of failed samples.
    # Energy between readings that differ here is not known.
    continuity: Tuple[Optional[float], ...]
    lag_s: Optional[float] = None  # how long before the read the count may stop (None: not known)
    resolution_j: float = 0.0  # the counter's step
    replayed: bool = False  # the power came from a recorded log played back (edgescope_power_source_info{replay})


class EpochEnergy(NamedTuple):
    joules: Optional[float]
    average_power_watts: Optional[float]
    note: str  # why joules is None ("" when measured)
    bound_joules: Optional[float] = None  # joules can be off by up to this (None: not known)
    replayed: bool = False  # a recorded power log played back at either edge: not this board's energy


def reading_from(series: Iterable[Tuple[str, Dict[str, str], float]], now: float) -> Reading:
    """A Reading from an exposition's (sample name, labels, value); the lag is the exporter's interval
    plus, for a source of lines, the same again (the exporter runs its source at its interval)."""
    values = {}  # type: Dict[str, float]
    source, replayed = "", False
    for name, labels, value in series:
        values.setdefault(name, value)
        if name == SOURCE_INFO:
            source, replayed = labels.get("source", ""), labels.get("replay") == "true"
    if ENERGY not in values:
        raise EnergyUnavailable("no {} (the exporter has no power source: see its edgescope_source_up)"
                                .format(ENERGY))
    interval = values.get(INTERVAL)
    return Reading(now, values[ENERGY], values.get(POWER), (values.get(EXPORTER_START), values.get(UNCOVERED)),
                   None if interval is None else lag_for(source, interval, interval), RESOLUTION_J.get(source, 0.0),
                   replayed)


def bound(start: Reading, end: Reading) -> Optional[float]:
    """How far the energy between two readings can be off: at each edge the counter may lag by the
    reading's lag, at up to the larger power read at the two edges, plus one counter step."""
    watts = [r.watts for r in (start, end) if r.watts is not None]
    if start.lag_s is None or end.lag_s is None or not watts:
        return None
    return max(watts) * (start.lag_s + end.lag_s) + start.resolution_j + end.resolution_j


def try_read(meter: Any) -> Union[Reading, str]:
    """A reading, or the reason there is none."""
    try:
        return meter.read()
    except EnergyUnavailable as error:
        return str(error)


def epoch_energy(start: Union[Reading, str], end: Union[Reading, str], broken: str) -> EpochEnergy:
    """The energy between two readings, or None with the reason it cannot be known
    (``broken``: what a change of ``continuity`` means for this meter)."""
    for edge, reading in (("start", start), ("end", end)):
        if isinstance(reading, str):
            return EpochEnergy(None, None, "energy unknown: no reading at the epoch's {} ({})".format(edge, reading))
    assert isinstance(start, Reading) and isinstance(end, Reading)
    if start.continuity != end.continuity:
        return EpochEnergy(None, None, "energy unknown: " + broken)
    if end.joules < start.joules:
        return EpochEnergy(None, None, "energy unknown: the energy counter went back from {:.1f} J to {:.1f} J "
                                       "(exporter restarted during the epoch)".format(start.joules, end.joules))
    joules = end.joules - start.joules
    seconds = end.monotonic - start.monotonic
    return EpochEnergy(joules, joules / seconds if seconds > 0 else None, "", bound(start, end),
                       start.replayed or end.replayed)


def redacted(url: str) -> str:
    """The URL without its password, for logs and labels."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = "{}:***@{}".format(parts.username, parts.netloc.rpartition("@")[2])
    return urlunsplit(parts._replace(netloc=netloc))


def metrics_url(url: str) -> str:
    """An exporter URL without a path (``http://board:9945`` or ``.../``) means its /metrics, as a Prometheus
    target does."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/metrics")) if parts.path in ("", "/") else url


class ExporterEnergy:
    """Reads the board exporter's /metrics over HTTP(S)."""

    source = "exporter"
    broken = ("the exporter restarted (its start time changed) or its power source had a gap in its readings "
              "(uncovered seconds grew) during the epoch")

    def __init__(self, url: str, ca_file: Optional[str] = None, timeout_s: float = READ_TIMEOUT_S) -> None:
        self.url = metrics_url(url)
        self.where = redacted(self.url)
        self._verify = ca_file or True  # type: Any
        self._timeout_s = timeout_s
        self._session = requests.Session()

    def read(self) -> Reading:
        try:
            response = self._session.get(self.url, timeout=self._timeout_s, verify=self._verify)
            if response.status_code != 200:
                raise EnergyUnavailable("{} answered HTTP {} {}".format(self.where, response.status_code,
                                                                        response.reason))
            families = list(text_string_to_metric_families(response.text))
        except requests.RequestException as error:
            raise EnergyUnavailable("cannot read {}: {}".format(self.where, type(error).__name__))
        except ValueError as error:
            raise EnergyUnavailable("{} is not a Prometheus exposition: {}".format(self.where, error))
        now = time.monotonic()
        return reading_from(((s.name, s.labels, s.value) for f in families for s in f.samples), now)

    def close(self) -> None:
        self._session.close()


class InProcessEnergy:
    """No exporter: the exporter's power source (its own choice among ``--power-source``) sampled in a
    background thread every ``interval_s`` and at each reading: a hardware counter's own count, or the
    source's power readings integrated here (trapezoid, gaps left uncovered), so that an epoch's
    energy covers exactly the time between its reads."""

    def __init__(self, settings: Dict[str, Any], interval_s: float = SAMPLE_INTERVAL_S) -> None:
        """``settings``' interval paces a source of lines (tegrastats, jtop); ``interval_s`` the sampling here.
        Raises EnergyUnavailable where no source can start (auto found none; tegrastats not installed)."""
        from exporter.cli import power_sources  # the exporter's own choice of source, imported only here
        from exporter.sources.base import Unavailable
        sources = power_sources(settings)
        # auto may list jtop as unavailable (client and service versions disagree) before the tegrastats it
        # falls back to: take the first source that works, as the exporter does
        working = [s for s in sources if not isinstance(s, Unavailable)]
        if not working:
            raise EnergyUnavailable("; ".join("{}: {}".format(s.name, s.reason) for s in sources) or "none")
        self._source = working[0]
        for spare in working[1:]:
            spare.close()
        self.source = self._source.name
        self.where = "power source " + self.source
        self._last_failure = ""
        self._interval_s = interval_s
        # read at the edge: a counter is current; a line is up to one line interval old
        self._lag_s = lag_for(self.source, 0.0, settings.get("interval", interval_s))
        self._integrator = None if self.source in COUNTER_SOURCES else EnergyIntegrator(max_gap_for(interval_s))
        self._failed = 0  # samples that failed: the energy across them is not known
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="power-sampler", daemon=True)
        self._thread.start()

    def _sample(self) -> Reading:
        with self._lock:
            now = time.monotonic()  # before the sample, as the counter sources (RAPL, NVML) time theirs
            try:
                samples = self._source.sample()
                board = {s.name: s.value for s in samples if not s.labels}
                if (ENERGY if self._integrator is None else POWER) not in board:
                    raise ValueError("no board {} in its sample".format("energy" if self._integrator is None
                                                                         else "power"))
            except Exception as error:  # a source fails in many ways (SourceDown, OSError, ...): all mean no reading
                self._failed += 1
                self._last_failure = str(error).strip() or type(error).__name__
                raise EnergyUnavailable("{} is down: {}".format(self.where, self._last_failure))
            if self._integrator is None:
                joules, uncovered = board[ENERGY], board.get(UNCOVERED)
            else:
                self._integrator.add(now, board[POWER])
                joules, uncovered = self._integrator.joules, self._integrator.uncovered_seconds
            return Reading(now, joules, board.get(POWER), (float(self._failed), uncovered), self._lag_s,
                           RESOLUTION_J.get(self.source, 0.0),
                           any(s.name == SOURCE_INFO and s.labels.get("replay") == "true" for s in samples))

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self._sample()
            except EnergyUnavailable:
                pass  # counted in _failed; the epoch it falls in reports why at its end

    def read(self) -> Reading:
        return self._sample()

    @property
    def broken(self) -> str:
        return "{} was down during the epoch (last: {})".format(self.where, self._last_failure)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval_s + 5)
        self._source.close()


def first_reading(meter: Any, timeout_s: float) -> Union[Reading, str]:
    """The first good reading within ``timeout_s`` (a source needs a sample or two to start),
    else the last reason there was none."""
    deadline = time.monotonic() + timeout_s
    while True:
        reading = try_read(meter)
        if isinstance(reading, Reading) or time.monotonic() >= deadline:
            return reading
        time.sleep(0.2)

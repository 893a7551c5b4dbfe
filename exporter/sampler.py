"""Samples every source in the background; a scrape reads the latest snapshot.

Each source runs in its own thread at the interval, on the monotonic clock, so
a slow source delays nobody else. The scrape never waits: it copies what the
threads last stored. A source whose sample has been running longer than the
timeout is reported down ("sample hung: ...") and its old values are
dropped until it answers again. `edgescope_source_up{source}` keeps one series
per source whatever happens; the reason a source is down goes to a separate
`edgescope_source_down_info{source,reason}`, so an alert on source_up does not
restart its `for:` each time the reason text changes during one outage.
A source whose thread stopped is reported down with the error, never its
last sample as up; values that cannot be exposed are dropped and counted
(exporter.metrics.exposable).
"""
import logging
import platform
import threading
import time
from typing import Dict, List, Optional

from exporter import __version__
from exporter.metrics import Sample, check, exposable
from exporter.sources.base import Source, SourceDown

log = logging.getLogger(__name__)
MAX_REASON = 200


class _State:
    def __init__(self) -> None:
        self.samples = []  # type: List[Sample]
        self.reason = "not sampled yet"
        self.duration = None  # type: Optional[float]
        self.last_success = None  # type: Optional[float]
        self.in_flight_since = None  # type: Optional[float]
        self.rejected = 0  # samples dropped at the exposition boundary (exporter.metrics.exposable)
        self.rejected_why = ""


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    text = text[0] if text else ""
    if not isinstance(error, SourceDown):
        text = "{}: {}".format(type(error).__name__, text) if text else type(error).__name__
    return text[:MAX_REASON]


class Sampler:
    def __init__(self, sources: List[Source], interval: float, timeout: float) -> None:
        self.sources = sources
        self.interval = interval
        self.timeout = timeout
        self._lock = threading.Lock()
        self._states = {s.name: _State() for s in sources}  # type: Dict[str, _State]
        self._stop = threading.Event()
        self._threads = []  # type: List[threading.Thread]

    def start(self) -> None:
        for src in self.sources:
            t = threading.Thread(target=self._loop, args=(src,), name="sample-" + src.name, daemon=True)
            t.start()
            self._threads.append(t)

    def _loop(self, src: Source) -> None:
        state = self._states[src.name]
        try:
            next_tick = time.monotonic()
            while not self._stop.is_set():
                self.sample_once(src, state)
                next_tick += self.interval
                now = time.monotonic()
                if next_tick < now:  # overran: skip the missed ticks rather than burst
                    next_tick = now + self.interval - (now - next_tick) % self.interval
                self._stop.wait(next_tick - now)
        except Exception as e:  # this source's thread is gone: its last sample must not stay up
            reason = "sampling thread stopped: " + _reason(e)
            log.error("source %s: %s", src.name, reason)
            with self._lock:
                state.samples, state.reason, state.in_flight_since = [], reason[:MAX_REASON], None

    def sample_once(self, src: Source, state: Optional[_State] = None) -> None:
        state = state or self._states[src.name]
        started = time.monotonic()
        with self._lock:
            state.in_flight_since = started
        try:
            samples = src.sample()
            check(samples)
            samples, rejected = exposable(samples, src.totals)
            reason = ""
        except Exception as e:  # any failure stays inside this source
            samples, rejected, reason = [], [], _reason(e)
        took = time.monotonic() - started
        with self._lock:
            state.rejected += len(rejected)
            why = "; ".join(sorted(set(rejected)))
            if why and why != state.rejected_why:  # once per kind of problem, not every interval
                log.warning("source %s: %d sample(s) not exposed: %s", src.name, len(rejected), why)
            state.rejected_why = why
            if reason and reason != state.reason:
                log.warning("source %s down: %s", src.name, reason)
            elif not reason and state.reason:
                log.info("source %s up", src.name)
            state.samples, state.reason, state.duration = samples, reason, took
            state.in_flight_since = None
            if not reason:
                state.last_success = time.time()

    def snapshot(self) -> List[Sample]:
        """Everything a scrape shows, without waiting on any source."""
        now = time.monotonic()
        out = [Sample("edgescope_exporter_build_info", {"version": __version__, "python": platform.python_version()}, 1.0),
               Sample("edgescope_exporter_interval_seconds", {}, self.interval)]
        with self._lock:
            for name, st in sorted(self._states.items()):
                reason, samples = st.reason, st.samples
                hung = st.in_flight_since is not None and now - st.in_flight_since > self.timeout
                if hung:
                    reason, samples = "sample hung: running longer than the {:g}s timeout".format(self.timeout), []
                out.append(Sample("edgescope_source_up", {"source": name}, 0.0 if reason else 1.0))
                if reason:
                    out.append(Sample("edgescope_source_down_info", {"source": name, "reason": reason}, 1.0))
                if st.duration is not None:
                    out.append(Sample("edgescope_source_sample_duration_seconds", {"source": name}, st.duration))
                if st.last_success is not None:
                    out.append(Sample("edgescope_source_last_success_timestamp_seconds", {"source": name}, st.last_success))
                out.append(Sample("edgescope_source_rejected_samples_total", {"source": name}, float(st.rejected)))
                out.extend(samples)
        return out

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout)
        for src in self.sources:
            try:
                src.close()
            except Exception as e:  # closing one source must not keep the others open
                log.warning("closing source %s: %s", src.name, e)

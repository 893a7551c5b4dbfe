"""Page-cache residency of the configured datasets (vmtouch equivalent), at a bounded CPU cost.

One thread does all the work and sample() only hands out its last results, so
a tree of a million files never delays a scrape. Every `interval` it measures
each dataset over the dataset's last complete listing: every file when the
listing has no more files than the draws `max_error` needs, else that many
page-weighted draws (see exporter.pagecache.sample_size). Between
measurements it lists the datasets again. With max_error 0 it counts every
file in one pass each interval instead, like vmtouch. All of it, except each
dataset's first listing and measurement, is paced by a token bucket of
thread CPU time (`cpu_budget` seconds per wall second, up to one interval's
worth at once), so the cost per interval is bounded whatever the dataset
size: a large dataset is listed less often instead.

A dataset the kernel would not show (see exporter.pagecache.Blind), or whose
path is gone, is reported down with a stable reason and no residency.
Files that cannot be read or vanish are skipped and counted.
"""
import errno
import logging
import os
import threading
import time
from typing import Callable, Generator, List, Optional

from exporter.metrics import Sample
from exporter.pagecache import Blind, Listing, Residency, Scanner, list_files, sample_size
from exporter.sources.base import Source

log = logging.getLogger(__name__)
LISTING_STEPS = 256  # files listed between checks of the clock and of the other datasets
QUANTUM = 0.002  # CPU seconds earned per wake-up once in debt: few wake-ups, each ~0.2 s apart at 0.01 s/s
NOT_YET = "first measurement not finished"
ROOT_REASONS = {
    errno.ENOENT: "dataset path does not exist",
    errno.EACCES: "dataset path cannot be read: give the exporter read access (e.g. CAP_DAC_READ_SEARCH)",
}
NO_FILE = "no file of the dataset could be read"


class Stopped(Exception):
    """The source was closed while its thread was working."""


class CpuBudget:
    """Token bucket of CPU seconds: `rate` per wall second, at most `burst` saved up; rate 0 = no limit.

    pace() is called after each piece of work; it sleeps while the thread has
    used more CPU than it earned. The clocks and the wait are parameters so
    the accounting can be tested without timing anything.
    """

    def __init__(self, rate: float, burst: float, stop: threading.Event,
                 wall: Callable[[], float] = time.monotonic, cpu: Callable[[], float] = time.thread_time) -> None:
        self.rate, self.burst, self._stop = rate, burst, stop
        self._wall, self._cpu = wall, cpu
        self._tokens = burst
        self._last_wall, self._last_cpu = None, None  # type: Optional[float], Optional[float]

    def pace(self) -> None:
        """Charge the CPU used since the last call; once in debt, sleep until QUANTUM of work is earned."""
        if self._stop.is_set():
            raise Stopped()
        if not self.rate:
            return
        wall, cpu = self._wall(), self._cpu()
        if self._last_wall is not None:
            earned = self.rate * (wall - self._last_wall)
            self._tokens = min(self.burst, self._tokens + earned) - (cpu - self._last_cpu)
        self._last_wall, self._last_cpu = wall, cpu
        if self._tokens < 0 and self._stop.wait((min(QUANTUM, self.burst) - self._tokens) / self.rate):
            raise Stopped()

    def forget(self) -> None:
        """Leave the CPU used since the last pace() uncharged (work the budget does not cover)."""
        self._last_wall = self._last_cpu = None


class _Dataset:
    def __init__(self, path: str) -> None:
        self.path = path
        self.label = os.path.abspath(path)
        self.listing = None  # type: Optional[Listing]
        self.lister = None  # type: Optional[Generator[None, None, Listing]]
        self.result = None  # type: Optional[Residency]
        self.took = self.finished = 0.0
        self.reason = NOT_YET
        self.errors = 0
        self.measured = False

    def error(self, e: OSError) -> None:
        self.errors += 1
        log.debug("page-cache scan of %s skipped a file: %s", self.label, e)


class PagecacheSource(Source):
    name = "pagecache"

    def __init__(self, datasets: List[str], scan_interval: float, method: Optional[str] = None,
                 max_error: float = 0.03, cpu_budget: float = 0.01) -> None:
        self._datasets = [_Dataset(p) for p in datasets]
        self._interval = scan_interval
        self._draws = sample_size(max_error) if max_error else 0
        self.scanner = Scanner(method)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._budget = CpuBudget(cpu_budget, cpu_budget * scan_interval, self._stop)
        self._thread = threading.Thread(target=self._run, name="pagecache-scan", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            due = time.monotonic()
            while True:
                if self._draws:
                    self._list_until(due)
                elif self._stop.wait(max(0.0, due - time.monotonic())):
                    raise Stopped()
                for ds in self._datasets:
                    self._measure(ds)
                due += self._interval
                if due < time.monotonic():  # overran: the listings still get a whole interval
                    due = time.monotonic() + self._interval
        except Stopped:
            return

    def _list_until(self, due: float) -> None:
        """Advance the datasets' listings until `due` (a first listing: until done), then wait for `due`.

        A dataset starts a new listing at most once per interval. Its first
        listing is not paced, so the first measurement waits for no budget.
        """
        for ds in self._datasets:
            if ds.lister is None:
                ds.lister = list_files(ds.path, ds.error)
        while True:
            now = time.monotonic()
            pending = [ds for ds in self._datasets if ds.lister is not None and (ds.listing is None or now < due)]
            if not pending:
                break
            for ds in pending:
                if ds.listing is None:
                    self._list_some(ds, self._check_stop)
                    self._budget.forget()
                else:
                    self._list_some(ds, self._budget.pace)
        if self._stop.wait(max(0.0, due - time.monotonic())):
            raise Stopped()

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise Stopped()

    def _list_some(self, ds: _Dataset, pace: Callable[[], None]) -> None:
        try:
            for _ in range(LISTING_STEPS):
                next(ds.lister)
                pace()
        except StopIteration as done:
            ds.listing, ds.lister = done.value, None
        except OSError as e:  # the dataset's own path
            ds.listing, ds.lister = None, None
            self._down(ds, e)

    def _down(self, ds: _Dataset, e: OSError) -> None:
        self._publish(ds, None, ROOT_REASONS.get(e.errno, "dataset path cannot be listed: {}".format(
            e.strerror or type(e).__name__)))

    def _measure(self, ds: _Dataset) -> None:
        """Measure over the last listing, or in one full pass when every file is asked for (max_error 0)."""
        if self._draws and ds.listing is None:
            return
        started = time.monotonic()
        first, ds.measured = not ds.measured, True
        pace = self._check_stop if first else self._budget.pace
        try:
            if self._draws:
                res = self.scanner.measure(ds.listing, self._draws, ds.error, pace)
            else:
                res = self.scanner.full_pass(ds.path, ds.error, pace)
        except Blind as e:
            self._publish(ds, None, str(e))
            return
        except OSError as e:  # the dataset's own path, in a full pass
            self._down(ds, e)
            return
        finally:
            if first:
                self._budget.forget()
        ds.took, ds.finished = time.monotonic() - started, time.time()
        self._publish(ds, res, "" if res else NO_FILE)

    def _publish(self, ds: _Dataset, res: Optional[Residency], reason: str) -> None:
        with self._lock:
            if reason != ds.reason:
                if reason:
                    log.warning("page cache of dataset %s not measured: %s", ds.label, reason)
                elif ds.reason != NOT_YET:
                    log.info("page cache of dataset %s measured again", ds.label)
            ds.result, ds.reason = res, reason

    def sample(self) -> List[Sample]:
        out = []
        with self._lock:
            for ds in self._datasets:
                lab = {"dataset": ds.label}
                out += [Sample("edgescope_dataset_up", lab, 0.0 if ds.reason else 1.0),
                        Sample("edgescope_dataset_scan_errors_total", lab, ds.errors)]
                if ds.reason:
                    out.append(Sample("edgescope_dataset_down_info", dict(lab, reason=ds.reason), 1.0))
                res = ds.result
                if res is None:
                    continue
                out += [
                    Sample("edgescope_dataset_size_bytes", lab, res.size_bytes),
                    Sample("edgescope_dataset_resident_bytes", lab, res.resident_bytes),
                    Sample("edgescope_dataset_page_cache_ratio", lab, res.ratio),
                    Sample("edgescope_dataset_page_cache_ratio_error_bound", lab, res.error_bound),
                    Sample("edgescope_dataset_files", lab, res.files),
                    Sample("edgescope_dataset_sampled_files", lab, res.sampled_files),
                    Sample("edgescope_dataset_scan_duration_seconds", lab, ds.took),
                    Sample("edgescope_dataset_scan_timestamp_seconds", lab, ds.finished),
                ]
        return out

    def close(self) -> None:
        self._stop.set()

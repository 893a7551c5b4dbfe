"""Page-cache residency of the configured datasets (vmtouch equivalent).

Scans run in this source's own thread on their own interval, so a tree of a
million files never delays a scrape: sample() only hands out the last scan.
"""
import logging
import os
import threading
import time
from typing import Dict, List, Optional, Tuple

from exporter.metrics import Sample
from exporter.pagecache import Residency, Scanner
from exporter.sources.base import Source, SourceDown

log = logging.getLogger(__name__)


class PagecacheSource(Source):
    name = "pagecache"

    def __init__(self, datasets: List[str], scan_interval: float, method: Optional[str] = None) -> None:
        self._datasets = datasets
        self._scan_interval = scan_interval
        self.scanner = Scanner(method)
        self._lock = threading.Lock()
        self._results = {}  # type: Dict[str, Tuple[Residency, float, float]]
        self._error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pagecache-scan", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            errors = []
            for path in self._datasets:
                started = time.monotonic()
                try:
                    res = self.scanner.scan(path)
                except OSError as e:
                    errors.append("{}: {}".format(e.filename or path, e.strerror or e))
                    continue
                with self._lock:
                    self._results[path] = (res, time.monotonic() - started, time.time())
            with self._lock:
                if errors and self._error != errors[0]:
                    log.warning("page-cache scan failed: %s", "; ".join(errors))
                self._error = errors[0] if errors else ""
            self._stop.wait(self._scan_interval)

    def sample(self) -> List[Sample]:
        with self._lock:
            if self._error:
                raise SourceDown("scan failed: {}".format(self._error))
            out = []
            for path, (res, took, finished) in sorted(self._results.items()):
                lab = {"dataset": os.path.abspath(path)}
                out += [
                    Sample("edgescope_dataset_size_bytes", lab, res.size_bytes),
                    Sample("edgescope_dataset_resident_bytes", lab, res.resident_bytes),
                    Sample("edgescope_dataset_page_cache_ratio", lab, res.ratio),
                    Sample("edgescope_dataset_files", lab, res.files),
                    Sample("edgescope_dataset_scan_duration_seconds", lab, took),
                    Sample("edgescope_dataset_scan_timestamp_seconds", lab, finished),
                ]
            return out

    def close(self) -> None:
        self._stop.set()

"""The exporter's wall clock and start time, computed when a scrape is answered.

`edgescope_time_seconds` minus the sample's Prometheus timestamp is this
board's clock offset (as node_exporter's node_time_seconds): the report shifts
the trainer's epoch edges by it and an alert fires when it is large.
`edgescope_exporter_start_time_seconds` changes when the exporter restarts,
which tells the report that its energy counter started again from zero.
"""
import time
from typing import Iterator

from prometheus_client.core import GaugeMetricFamily

from exporter.metrics import METRICS

TIME = "edgescope_time_seconds"
START = "edgescope_exporter_start_time_seconds"


class ClockCollector:
    """prometheus_client custom collector: the clock is read at scrape time, not at sampling time."""

    def __init__(self, started: float) -> None:
        self.started = started

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(TIME, METRICS[TIME].help, value=time.time())
        yield GaugeMetricFamily(START, METRICS[START].help, value=self.started)

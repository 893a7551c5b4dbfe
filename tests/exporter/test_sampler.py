"""The sampler: each source's health (stable up series, reason apart), a source recovering, contract checking, steady 1/interval pace."""
import threading
import time

from exporter.metrics import Sample
from exporter.sampler import Sampler
from exporter.sources.base import Source, SourceDown


class Flaky(Source):
    name = "rapl"

    def __init__(self):
        self.fail = True

    def sample(self):
        if self.fail:
            raise SourceDown("no RAPL zones")
        return [Sample("edgescope_board_power_watts", {}, 3.0)]


class OffContract(Source):
    name = "thermal"

    def sample(self):
        return [Sample("edgescope_cpu_temperature", {}, 1.0)]


def snap(sampler):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in sampler.snapshot()}


def test_down_then_up_and_last_success():
    src = Flaky()
    sampler = Sampler([src], interval=1.0, timeout=5.0)
    before = snap(sampler)
    assert before[("edgescope_source_up", (("source", "rapl"),))] == 0
    assert before[("edgescope_source_down_info", (("reason", "not sampled yet"), ("source", "rapl")))] == 1
    sampler.sample_once(src)
    down = snap(sampler)
    assert down[("edgescope_source_up", (("source", "rapl"),))] == 0
    assert down[("edgescope_source_down_info", (("reason", "no RAPL zones"), ("source", "rapl")))] == 1
    assert ("edgescope_source_down_info", (("reason", "not sampled yet"), ("source", "rapl"))) not in down
    assert ("edgescope_source_last_success_timestamp_seconds", (("source", "rapl"),)) not in down
    assert ("edgescope_board_power_watts", ()) not in down
    src.fail = False
    sampler.sample_once(src)
    up = snap(sampler)
    assert up[("edgescope_source_up", (("source", "rapl"),))] == 1
    assert not any(k[0] == "edgescope_source_down_info" for k in up)  # absent while up
    assert up[("edgescope_board_power_watts", ())] == 3.0
    assert abs(up[("edgescope_source_last_success_timestamp_seconds", (("source", "rapl"),))] - time.time()) < 60
    assert up[("edgescope_source_sample_duration_seconds", (("source", "rapl"),))] >= 0


def test_series_outside_the_contract_mark_the_source_down():
    src = OffContract()
    sampler = Sampler([src], interval=1.0, timeout=5.0)
    sampler.sample_once(src)
    got = snap(sampler)
    assert got[("edgescope_source_up", (("source", "thermal"),))] == 0
    assert got[("edgescope_source_down_info", (("reason", "ValueError: metric edgescope_cpu_temperature is not in docs/metrics.md"),
                                               ("source", "thermal")))] == 1


def test_background_loop_samples_every_interval():
    class Counter(Source):
        name = "diskstats"
        calls = 0

        def sample(self):
            Counter.calls += 1
            return []
    sampler = Sampler([Counter()], interval=0.05, timeout=5.0)
    sampler.start()
    time.sleep(0.5)
    sampler.stop()
    # ~10 ticks in 0.5 s on the monotonic grid; generous bounds for a loaded 2-core machine
    assert 5 <= Counter.calls <= 12
    assert not any(t.is_alive() for t in threading.enumerate() if t.name == "sample-diskstats")

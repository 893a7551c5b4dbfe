"""The last gate before /metrics: values that cannot be right are dropped and counted, label values
are valid UTF-8, and a source whose sampling thread died is down rather than frozen up."""
import threading
import time

from hypothesis import given, settings, strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from exporter.metrics import METRICS, Sample, exposable, utf8_label, value_problem
from exporter.sampler import Sampler
from exporter.server import SnapshotCollector
from exporter.sources.base import Source


def source_state(snapshot, source):
    """(up value, reason text) of one source, whichever series carries the reason."""
    up = [s.value for s in snapshot if s.name == "edgescope_source_up" and s.labels["source"] == source]
    reasons = [s.labels["reason"] for s in snapshot if s.labels.get("source") == source and s.labels.get("reason")]
    return up[0], (reasons[0] if reasons else "")


def value_of(snapshot, name, **labels):
    return [s.value for s in snapshot if s.name == name and s.labels == labels]


class Fixed(Source):
    name = "tegrastats"

    def __init__(self, samples):
        self.samples = samples

    def sample(self):
        return self.samples


def test_absurd_values_are_dropped_counted_and_the_rest_exposed():
    src = Fixed([
        Sample("edgescope_memory_used_bytes", {}, 10 ** 400),  # a 400-digit tegrastats number
        Sample("edgescope_temperature_celsius", {"sensor": "cpu"}, float("nan")),
        Sample("edgescope_cpu_utilisation_ratio", {"cpu": "cpu0"}, 1.5),
        Sample("edgescope_board_power_watts", {}, -2.0),
        Sample("edgescope_temperature_celsius", {"sensor": "gpu"}, -12.5),  # cold, not absurd
        Sample("edgescope_memory_total_bytes", {}, 4 * 2 ** 30),
    ])
    sampler = Sampler([src], interval=1.0, timeout=5.0)
    sampler.sample_once(src)
    sampler.sample_once(src)
    snap = sampler.snapshot()
    assert source_state(snap, "tegrastats") == (1.0, "")
    assert value_of(snap, "edgescope_source_rejected_samples_total", source="tegrastats") == [8.0]
    assert value_of(snap, "edgescope_temperature_celsius", sensor="gpu") == [-12.5]
    assert value_of(snap, "edgescope_memory_total_bytes") == [4.0 * 2 ** 30]
    for name in ("edgescope_memory_used_bytes", "edgescope_cpu_utilisation_ratio", "edgescope_board_power_watts"):
        assert value_of(snap, name) == [] and value_of(snap, name, cpu="cpu0") == []
    assert value_of(snap, "edgescope_temperature_celsius", sensor="cpu") == []
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(sampler.snapshot))
    text = generate_latest(registry).decode("utf-8")  # the scrape itself must not fail
    assert 'edgescope_source_rejected_samples_total{source="tegrastats"} 8.0' in text


def test_non_utf8_label_values_are_stable_escapes():
    path = b"/data/caf\xe9".decode("utf-8", "surrogateescape")  # a Latin-1 file name, as argv gives it
    assert utf8_label(path) == "/data/caf\\xe9"
    assert utf8_label("/data/café") == "/data/café"  # valid UTF-8 stays as it is
    assert utf8_label("\ud800") == "\\ud800"  # a surrogate that stands for no byte
    kept, rejected = exposable([Sample("edgescope_dataset_files", {"dataset": path}, 3)])
    assert rejected == [] and kept[0].labels == {"dataset": "/data/caf\\xe9"}
    kept[0].labels["dataset"].encode("utf-8")


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(sorted(METRICS)),
       value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-10 ** 500, max_value=10 ** 500)),
       label=st.text())
def test_whatever_a_source_produces_the_exposition_is_valid(name, value, label):
    labels = {k: label for k in METRICS[name].labels}
    kept, rejected = exposable([Sample(name, labels, value)])
    assert len(kept) + len(rejected) == 1
    if kept:
        assert value_problem(name, kept[0].value) is None and isinstance(kept[0].value, float)
        src = Fixed(kept)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SnapshotCollector(lambda: src.samples))
        generate_latest(registry).decode("utf-8")


def test_a_dead_sampling_thread_reports_its_source_down():
    src = Fixed([Sample("edgescope_board_power_watts", {}, 5.0)])
    # an interval Event.wait() cannot take (what --interval inf used to reach): the thread dies after one sample
    sampler = Sampler([src], interval=threading.TIMEOUT_MAX * 4, timeout=5.0)
    sampler.start()
    deadline = time.monotonic() + 10
    while sampler._threads[0].is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    snap = sampler.snapshot()
    up, reason = source_state(snap, "tegrastats")
    assert up == 0 and reason.startswith("sampling thread stopped: OverflowError"), reason
    assert value_of(snap, "edgescope_board_power_watts") == []  # not the frozen 5 W

"""Property tests: the plan loader on generated plans (a valid plan with any key changed to any
value, arbitrary documents, arbitrary bytes). load() gives a plan whose sweep fits the cap or
raises PlanError with one line; nothing else escapes."""
import os
import tempfile

import yaml
from hypothesis import given, settings, strategies as st

from experiment.plan import MAX_RUNS, PlanError, load

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10 ** 12, max_value=10 ** 12),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(["vgg11", "resnet18", "cifar10", "MAXN", "http://h:9090", "json", "/tmp"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=10)
KEYS = ["name", "repeats", "trainer.dataset", "trainer.epochs", "trainer.max_batches", "trainer.metrics_port",
        "trainer.device_name", "trainer.extra_args", "trainer.command", "sweep.model", "sweep.batch_size",
        "sweep.workers", "sweep.prefetch_factor", "sweep.power_mode", "sweep.dataset_location", "controls",
        "controls.drop_caches", "output.dir", "report.prometheus", "report.format", "report.plots",
        "report.warmup_epochs", "sweep", "trainer", "unknown", "sweep.unknown"]


def valid_plan():
    return {"name": "p", "repeats": 1, "trainer": {"epochs": 3},
            "sweep": {"model": ["vgg11"], "batch_size": [16], "dataset_location": {"sd": "/data"}},
            "report": {"prometheus": "http://localhost:9090"}}


def load_bytes(content: bytes):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "plan.yaml")
        with open(path, "wb") as f:
            f.write(content)
        try:
            plan = load(path)
        except PlanError as e:
            assert "\n" not in str(e) and str(e).startswith(path)
            return None
    assert len(plan.runs()) <= MAX_RUNS
    return plan


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=3))
def test_a_valid_plan_with_any_values_changed(changes):
    plan = valid_plan()
    for dotted, value in changes:
        node = plan
        parts = dotted.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    load_bytes(yaml.safe_dump(plan, allow_unicode=True).encode("utf-8"))


@settings(max_examples=100, deadline=None)
@given(st.one_of(VALUES, st.binary(max_size=300)))
def test_any_document_or_bytes(doc):
    load_bytes(doc if isinstance(doc, bytes) else yaml.safe_dump(doc, allow_unicode=True).encode("utf-8"))


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=10 ** 30), st.integers(min_value=1, max_value=40))
def test_sweep_size_is_checked_not_built(repeats, models):
    plan = valid_plan()
    plan["repeats"] = repeats
    plan["sweep"]["batch_size"] = list(range(1, models + 1))
    loaded = load_bytes(yaml.safe_dump(plan).encode("utf-8"))
    assert (loaded is not None) == (repeats * models <= MAX_RUNS)

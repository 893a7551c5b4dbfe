"""Which names a user's label may take, checked wherever a label comes in: the trainer's --label, the callbacks'
labels, an experiment plan's extra_args. Torch-free (the experiment runner checks a plan on a board without
torch) and free of the metrics server."""
import re
from typing import AbstractSet, Optional

from trainer.mode import MODE_LABELS
from trainer.results import RECORD_FIELDS

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*\Z")
RUN_INFO_LABELS = ("model", "dataset", "dataset_samples", "dataset_id", "batch_size", "workers", "prefetch_factor",
                   "pin_memory", "timing", "torch_device", "device_name", "energy_source")
# run_info labels the trainer records only since some version: a run (or a checkpoint) from before has none, and
# is told apart from one that has them, never taken for the same work nor refused for lacking them
RECORDED_SINCE = ("dataset_samples", "dataset_id")
# input, image_size, max_batches: set by the trainer where they apply (--synthetic-input, imagefolder, --max-batches);
# epoch_samples, power_replayed: set by the report from the run's epochs; mode_*: the power mode's hardware
# (trainer.mode, read by the trainer)
RESERVED_LABELS = {"run_id", "device", "device_type", "storage", "instance", "job", "epoch",
                   "input", "image_size", "max_batches", "epoch_samples", "power_replayed"} | set(RUN_INFO_LABELS) \
    | set(MODE_LABELS)


def label_problem(key: str, reserved: AbstractSet[str] = RESERVED_LABELS) -> Optional[str]:
    """Why ``key`` cannot name a user's label (None: it can). A label sits beside the measured fields in each
    --results record and in the run's series: it may never replace one, nor be a name Prometheus refuses."""
    if not LABEL_NAME.match(key):
        return "{!r} is not a Prometheus label name".format(key)
    if key.startswith("__"):
        return "{} starts with __, which Prometheus reserves".format(key)
    if key in RECORD_FIELDS:
        return "{} is a field of every --results record".format(key)
    if key in reserved:
        return "{} is set by edgescope itself (as are {})".format(key, ", ".join(sorted(reserved - {key})))
    return None


def label_argument_problem(text: str) -> Optional[str]:
    """Why ``text`` cannot be a --label argument, KEY=VALUE (None: it can): one line naming it and the fix."""
    key, sep, _ = text.partition("=")
    problem = label_problem(key) if sep else "no ="
    if problem:
        return "{!r} must be KEY=VALUE with KEY a label name of your own: {}; name it otherwise".format(text, problem)
    return None

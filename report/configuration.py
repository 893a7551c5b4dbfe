"""What a configuration is: the knobs a user sets to train, read from a run's
``edgescope_train_run_info`` labels (with its target's ``device`` and
``storage``). One definition for the comparison rows, the Pareto front and its
budgets, the what-ifs' search for a run that measured what they predict, and
the comparison dashboard's variables (grafana/generate.py).

A run's other labels are either how it was *measured* (a profile pass, a page
cache evicted or warmed on purpose, synthetic input, the timing method): runs
measured differently are rows apart, and only a normal measurement is a way to
train; or *context* (the plan's name, the data directory's path, the CPU count
the power mode left, JetPack): shown, never a reason for two rows.
"""
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from trainer.labels import RECORDED_SINCE

# (label, title) in the order tables and dashboards show them. storage is the board's (its target's label),
# dataset_location the run's (the experiment runner's): one board may train from its SD card and from an NVMe.
# power_mode is nvpmodel's mode (the runner records its id too, power_mode_id, as context: a run labelled by
# hand or before the runner recorded it has the name alone), jetson_clocks whether the clocks were pinned at
# the mode's maximum: together the clocks the mode implies. mode_*: the mode's hardware as the trainer read it
# (trainer.mode: cores, CPU quota, CPU / GPU / memory clock caps), what the power-mode what-if scales by. framework,
# precision and gradient_accumulation_steps come from the Lightning and transformers callbacks. dataset_id (which files an
# epoch reads: edgescope-train hashes their paths under --data-dir and sizes, so two image folders of as many
# images differ and a copy on another disk does not; "none" from the callbacks), dataset_samples (the samples a
# full epoch of the dataset holds) and epoch_samples (those each epoch of the run covered) make a run's workload
# (WORKLOAD); epoch_samples is read from the run's epochs (FROM_EPOCHS), not from run_info.
KNOBS = (("device", "Device"), ("torch_device", "Torch device"), ("model", "Model"), ("dataset", "Dataset"),
         ("dataset_id", "Dataset identity"), ("image_size", "Image size"),
         ("dataset_samples", "Samples in a full epoch"),
         ("epoch_samples", "Samples per epoch"), ("max_batches", "Batches per epoch"), ("batch_size", "Batch size"),
         ("gradient_accumulation_steps", "Gradient accumulation"), ("workers", "Workers"),
         ("prefetch_factor", "Prefetch factor"), ("pin_memory", "Pinned memory"), ("power_mode", "Power mode"),
         ("mode_cpu_cores", "CPU cores"), ("mode_cpu_quota_cores", "CPU quota (cores)"),
         ("mode_cpu_max_hz", "CPU max clock (Hz)"), ("mode_gpu_max_hz", "GPU max clock (Hz)"),
         ("mode_emc_max_hz", "Memory max clock (Hz)"), ("jetson_clocks", "jetson_clocks"), ("storage", "Storage"), ("dataset_location", "Dataset location"),
         ("precision", "Precision"), ("framework", "Framework"))
KNOB_NAMES = tuple(name for name, _ in KNOBS)
# Knobs the report reads from a run's epochs (edgescope_train_epoch_samples), not from its run_info labels.
FROM_EPOCHS = ("epoch_samples",)
# One epoch's work: time and energy per epoch compare only between runs of one workload (one front each, one
# budget, one what-if's measured match).
WORKLOAD = ("model", "dataset", "dataset_id", "image_size", "dataset_samples", "epoch_samples")
# epoch_samples of a run whose epochs covered different numbers of samples: no one workload
VARIES = "varies"
# Knobs the report's tables give a column of their own: left out of the configuration text beside them.
COLUMNS = ("device", "storage", "model")
# How a run was measured, never a knob. power_replayed ("true"): its power came from a recorded log played back
# (report.collect sets it): a row apart from measured runs of the same knobs, never a point on the front.
MEASUREMENT = ("profile_pass", "page_cache", "input", "timing", "power_replayed")
# page_cache of a normal run: dropped before it or kept (kept across its epochs either way); "evicted" before
# every epoch or "warmed" are measurement states (--profile's cold and cached passes)
CHOSEN_PAGE_CACHE = (None, "kept", "dropped")
# Labels naming the run, the scrape target or the trainer's own copy of them: neither knob nor context.
# energy_source says how the trainer measured energy (every figure carries its bound): not worth a note.
IDENTITY = ("__name__", "run_id", "job", "instance", "device_name", "device_type", "energy_source")

Labels = Mapping[str, str]
Key = Tuple[Tuple[str, ...], Tuple[Tuple[str, str], ...]]


def knobs(labels: Labels) -> Dict[str, str]:
    """The run's configuration: every knob it has a value for."""
    return {name: labels[name] for name in KNOB_NAMES if labels.get(name)}


def measured_as(labels: Labels) -> Dict[str, str]:
    return {name: labels[name] for name in MEASUREMENT if labels.get(name)}


def context(labels: Labels) -> Dict[str, str]:
    """Everything else the run's labels say (shown beside a row, never a reason for another)."""
    return {k: v for k, v in labels.items() if k not in KNOB_NAMES and k not in MEASUREMENT and k not in IDENTITY}


def key(labels: Labels) -> Key:
    """Runs with equal keys are repeats of one configuration, measured the same way: one comparison row."""
    return tuple(labels.get(name, "") for name in KNOB_NAMES), tuple(sorted(measured_as(labels).items()))


def same_except(a: Labels, b: Labels, changed: Sequence[str]) -> bool:
    """a and b are the same configuration, measured the same way, apart from the labels ``changed``."""
    def kept(labels: Labels) -> Key:
        return key({k: v for k, v in labels.items() if k not in changed})
    return kept(a) == kept(b)


def of_record(record: Mapping) -> Dict[str, str]:
    """A report record's (run summary or comparison row) knobs and measurement as labels again: its
    ``configuration`` and ``measured_as`` with the knobs that are fields of their own."""
    labels = {name: record[name] for name in COLUMNS if record.get(name)}
    labels.update(record.get("configuration", {}))
    labels.update(record.get("measured_as", {}))
    return labels


def recorded_since(rows: Sequence[Mapping]) -> List[str]:
    """One line per comparison row whose runs' trainer recorded some of RECORDED_SINCE not, beside rows of the
    same knobs whose trainer did: nothing shows that the two did the same work (another dataset of as many
    samples, part of an epoch), so they are rows and fronts apart, and the line names both and why."""
    notes = []
    records = [(row, of_record(row)) for row in rows]
    for old, labels in records:
        missing = [name for name in RECORDED_SINCE if not labels.get(name)]
        newer = [", ".join(row["runs"]) for row, other in records if row is not old and missing
                 and any(other.get(name) for name in missing) and same_except(labels, other, missing)]
        if newer:
            notes.append("Comparison: runs {} ({} {} {}) are a row and a workload apart from runs {} of the same "
                         "knobs: their trainer, older than run_info's {}, did not record {}, so the same work cannot "
                         "be shown; rerun them with this one to compare".format(
                             ", ".join(old["runs"]), old["device"], old.get("model") or "an unknown model",
                             configuration_text(old["configuration"]), "; ".join(newer), ", ".join(missing),
                             "it" if len(missing) == 1 else "them"))
    return notes


def configuration_text(configuration: Mapping[str, str]) -> str:
    """Knobs as one line a person reads: key=value, sorted."""
    return " ".join("{}={}".format(k, v) for k, v in sorted(configuration.items()))


def not_a_choice(measured: Labels) -> Optional[str]:
    """Why a run measured this way is a measurement pass rather than a way to train; None if it is one."""
    if measured.get("input") == "synthetic":
        return "a synthetic-input pass (no data loaded)"
    if "profile_pass" in measured:
        return "a profile pass (profile_pass={})".format(measured["profile_pass"])
    if measured.get("page_cache") not in CHOSEN_PAGE_CACHE:
        return "a page-cache state set for measuring (page_cache={})".format(measured["page_cache"])
    return None


def workload(labels: Labels) -> Tuple[str, ...]:
    """Equal for runs whose time and energy per epoch compare: the same work in every epoch."""
    return tuple(labels.get(name, "") for name in WORKLOAD)


def _count(text: Optional[str]) -> Optional[int]:
    return int(text) if text and text.isdigit() else None


def workload_text(labels: Labels) -> str:
    """The workload for people, what is known of it: ``vgg11 on cifar10 (id 3f2a9c1b7e4d), 50000 samples an
    epoch`` (``64 of 50000`` for part of one)."""
    text = labels.get("model") or "an unknown model"
    if labels.get("dataset"):
        text += " on " + labels["dataset"]
    if labels.get("dataset_id") not in (None, "", "none"):
        text += " (id {})".format(labels["dataset_id"])
    if labels.get("image_size"):
        text += " at {} px".format(labels["image_size"])
    covered, full = labels.get("epoch_samples"), labels.get("dataset_samples")
    if covered and full and covered != full:
        return text + ", {} of {} samples an epoch".format(covered, full)
    return text + (", {} samples an epoch".format(covered or full) if covered or full else "")


def part_of_an_epoch(labels: Labels) -> Optional[str]:
    """Why a run's epochs are not full epochs of its dataset (None: they are, or nothing says otherwise): it
    covered fewer samples than the dataset holds (--max-batches, a framework's window), or --max-batches cut
    it where the trainer did not say how many samples the dataset holds."""
    covered, full = _count(labels.get("epoch_samples")), _count(labels.get("dataset_samples"))
    if covered is not None and full is not None and covered < full:
        return "its epochs covered {} of the {} samples of a full epoch".format(covered, full)
    if full is None and labels.get("max_batches"):
        return "its epochs were cut at {} batches (--max-batches)".format(labels["max_batches"])
    return None

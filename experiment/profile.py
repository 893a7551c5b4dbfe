"""``edgescope-experiment --profile``: DS-Analyzer's differential passes. Each
run of the plan is trained three times: on synthetic input (one random batch
on the device, no loader: the model's compute alone, the floor of every
what-if), with its dataset evicted from the page cache (cold: reads come from
the disk) and then read into it (cached: the same run without storage), so the
report can show the "dataset cached" prediction of the cold pass next to the
cached pass's measurement. None needs root:
eviction is fdatasync + posix_fadvise(DONTNEED) on each file, warming reads each file
(trainer/pagecache.py). The cold pass also has the trainer evict the dataset before every epoch
(--evict-dataset): the report averages epochs after the first, which would otherwise read a cache
the first epoch filled."""
import dataclasses
from typing import Dict, List, Optional, Tuple

from experiment.plan import RunSpec
from trainer.pagecache import evict, warm

PASSES = ("synthetic", "cold", "cached")


def expand(runs: List[RunSpec], profile: bool) -> List[Tuple[RunSpec, Optional[str]]]:
    """The runs to train: each run as is, or (profile) once per pass under ``<run_id>-<pass>``."""
    if not profile:
        return [(run, None) for run in runs]
    return [(dataclasses.replace(run, run_id="{}-{}".format(run.run_id, name)), name)
            for run in runs for name in PASSES]


def prepare(name: str, data_dir: str) -> Dict[str, str]:
    """Set the page cache up for the pass; the labels that say so (the synthetic pass reads no file)."""
    if name == "synthetic":
        return {"profile_pass": name}
    if name == "cold":
        evict(data_dir)
        return {"profile_pass": name, "page_cache": "evicted"}
    warm(data_dir)
    return {"profile_pass": name, "page_cache": "warmed"}


def trainer_flags(name: Optional[str]) -> List[str]:
    """The trainer's extra flags for the pass: the cold pass stays cold in every epoch."""
    return {"cold": ["--evict-dataset"], "synthetic": ["--synthetic-input"]}.get(name or "", [])


"""The per-epoch checkpoint: saved atomically at every epoch end, restored by ``--resume`` only into the same
run (same settings), its history published again."""
import argparse
import os
from typing import Any, Dict, List, Optional

import torch

from exporter import atomicfile
from exporter.arguments import utf8_argument
from exporter.yamlfile import one_line
from trainer.errors import UsageError
from trainer.labels import RECORDED_SINCE
from trainer.safe_load import describe, load_checkpoint

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_KEYS = {"epoch": int, "run_id": str, "history": list, "model": dict, "optimizer": dict}


def load(directory: str, device: torch.device) -> Dict[str, Any]:
    path = os.path.join(directory, CHECKPOINT_FILE)
    if not os.path.isfile(path):
        raise UsageError("--resume: no checkpoint at {}; run without --resume first".format(path))
    state = load_checkpoint(path, device)
    missing = [key for key, kind in CHECKPOINT_KEYS.items()
               if not isinstance(state, dict) or not isinstance(state.get(key), kind)]
    if missing:
        raise UsageError("--resume: {} lacks {} (or has the wrong type); it is not an edgescope-train checkpoint: "
                         "delete it or point --checkpoint-dir elsewhere".format(path, ", ".join(missing)))
    epochs = [record.get("epoch") if isinstance(record, dict) else None for record in state["history"]]
    if state["epoch"] < 0 or epochs != list(range(state["epoch"] + 1)):
        # a checkpoint is saved after each complete epoch with the records of epochs 0..epoch: anything else would
        # train epochs that were never run (-4...) or publish a history that does not lead to this one
        raise UsageError("--resume: {} says epoch {} after a history of epochs {}; edgescope-train saves epochs "
                         "0..N after epoch N: delete it or point --checkpoint-dir elsewhere".format(
                             path, state["epoch"], one_line(str(epochs[:10]))[:200]))
    return state


def restore(job: Any, state: Dict[str, Any], path: str) -> None:
    """The model and optimizer from ``state``; one written for another model or optimizer is a UsageError."""
    try:
        job.model.load_state_dict(state["model"])
        job.optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        raise UsageError("--resume: {} does not fit this run ({}); resume with the same --model, or point "
                         "--checkpoint-dir elsewhere".format(path, describe(error)))


def resumed_run_id(state: Dict[str, Any], given: Optional[str], directory: str) -> str:
    """The checkpoint's run id: a resume continues that run, so another --run-id would publish its epochs under
    a second identity (an equal or absent one takes the checkpoint's)."""
    saved = state["run_id"]
    try:  # the checks --run-id has: a run id becomes a label, a folder and a terminal line
        if not utf8_argument(saved).strip():
            raise argparse.ArgumentTypeError("{!r} is empty".format(saved))
    except argparse.ArgumentTypeError as error:
        raise UsageError("--resume: {} holds a run id no run can have ({}); start a new run with another "
                         "--checkpoint-dir".format(directory, one_line(str(error))))
    if given is not None and given != saved:
        raise UsageError("--resume: {} holds run {}, not --run-id {}; drop --run-id (or give {}) to continue it, "
                         "or point --checkpoint-dir elsewhere for a new run".format(
                             directory, one_line(saved), one_line(given), one_line(saved)))
    return saved


def check_settings(saved: Optional[Dict[str, str]], settings: Dict[str, str], directory: str) -> None:
    """A run id holds one configuration: resuming it with other settings would pool two in its epochs.
    (A checkpoint from before settings were saved has none to compare; one from before RECORDED_SINCE's labels, the
    dataset's own size and identity, is checked on the others.)"""
    if saved is None:
        return
    if not (isinstance(saved, dict) and all(isinstance(x, str) for item in saved.items() for x in item)):
        raise UsageError("--resume: the settings saved in {} are malformed; delete the checkpoint or point "
                         "--checkpoint-dir elsewhere".format(directory))
    changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k)
                     and (k in saved or k not in RECORDED_SINCE))
    if changed:
        def values(of: Dict[str, str]) -> str:
            return ", ".join("{}={}".format(k, one_line(of.get(k, "(unset)"))) for k in changed)
        raise UsageError("--resume: {} was trained with {}, this run has {}; resume with the same settings, or "
                         "point --checkpoint-dir elsewhere".format(directory, values(saved), values(settings)))


def remove_stale(directory: str) -> List[str]:
    """Removes the half-written checkpoints a killed run left (each save's temporary file); their paths."""
    return atomicfile.remove_stale(os.path.join(directory, CHECKPOINT_FILE))


def save(directory: str, state: Dict[str, Any]) -> None:
    """Atomic: a crash or a full disk while saving leaves the previous checkpoint intact."""
    path = os.path.join(directory, CHECKPOINT_FILE)
    try:
        os.makedirs(directory, exist_ok=True)
        atomicfile.write_with(path, lambda f: torch.save(state, f))
    except (OSError, RuntimeError) as error:  # torch.save may report a full disk as RuntimeError
        raise UsageError(atomicfile.cannot_write("checkpoint", path, error, "pick another --checkpoint-dir"))

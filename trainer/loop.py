"""One training epoch, measured: the loop of the reference experiment (zero_grad, forward, backward, step) inside
``StepMeter``'s epoch window, stopping cleanly at a batch boundary on SIGINT/SIGTERM."""
import signal
from typing import Any, Dict, NamedTuple, Optional, Tuple

import torch
import torch.nn as nn

from trainer.meter import StepMeter, Window
from trainer.metrics import TrainMetrics
from trainer.progress import EpochProgress, say


class StopRequest:
    """SIGINT/SIGTERM set a flag; the loop stops at the next batch boundary."""

    def __init__(self) -> None:
        self.signum = 0
        self._previous = {}  # type: Dict[int, Any]

    def __enter__(self) -> "StopRequest":
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    @property
    def requested(self) -> bool:
        return self.signum != 0





class Job(NamedTuple):
    """What one training step needs."""
    model: nn.Module
    optimizer: torch.optim.Optimizer
    criterion: nn.Module
    loader: Any
    device: torch.device


def train_epoch(job: Job, epoch: int, meter: StepMeter, metrics: TrainMetrics, batches_per_epoch: int,
                log_interval: int, stop: StopRequest,
                progress: EpochProgress) -> Tuple[Window, int, int, Optional[float]]:
    """One epoch, measured in the window "epoch"; returns it with batches, samples and the mean loss.
    The loss is summed on the device and read only every ``log_interval`` steps and at the end."""
    job.model.train()
    running_loss = torch.zeros((), device=job.device)
    epoch_loss = torch.zeros((), device=job.device)
    window_steps = batches = samples = 0
    meter.begin_window("epoch")
    try:
        for images, targets in meter.wrap(job.loader, device=job.device):
            with meter.step():
                job.optimizer.zero_grad()
                loss = job.criterion(job.model(images), targets)
                loss.backward()
                job.optimizer.step()
                running_loss += loss.detach()  # stays on the device: no sync per batch
            batches += 1
            samples += len(targets)
            metrics.samples.inc(len(targets))
            progress.advance(len(targets))
            window_steps += 1
            if batches % log_interval == 0:
                mean = (running_loss / window_steps).item()  # the only sync, every log_interval steps
                metrics.loss.set(mean)
                say(progress.bar, "epoch {} step {}/{} loss {:.4f}".format(epoch, batches, batches_per_epoch, mean))
                epoch_loss += running_loss
                running_loss.zero_()
                window_steps = 0
            if stop.requested or batches == batches_per_epoch:
                break
    except Exception:
        if not stop.requested:  # Ctrl-C may also end the loader's workers: expected then, not an error
            raise
    window = meter.end_window("epoch")
    if window_steps:
        metrics.loss.set((running_loss / window_steps).item())
    epoch_loss += running_loss
    return window, batches, samples, (epoch_loss / batches).item() if batches else None




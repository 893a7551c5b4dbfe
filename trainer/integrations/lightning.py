"""``EdgescopeCallback`` for Lightning >= 2: edgescope-train's series from ``Trainer.fit``.

    from trainer.integrations.lightning import EdgescopeCallback
    trainer = lightning.Trainer(callbacks=[EdgescopeCallback(run_id="my-run", metrics_port=9946)])

What the hooks measure: Lightning fetches a batch (one ahead), copies it to the device, then calls
``on_train_batch_start``; so a micro-batch's fetch stall is from the previous ``on_train_batch_end`` to its
``on_train_batch_start`` (the device copy included, as edgescope-train's), and its compute from there to
its ``on_train_batch_end`` (forward, backward and, on the step's last micro-batch, the optimizer step).
An optimizer step (``trainer.global_step`` moved) closes one contract batch. Validation run inside an
epoch (``val_check_interval``) falls in the next step's stall; at the epoch's end, in its overhead.
"""
from typing import Any, Dict

from trainer.integrations.recorder import RunRecorder, label_value, samples_of
from trainer.meter import split_load_times

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:
    try:
        from pytorch_lightning.callbacks import Callback  # type: ignore[no-redef]
    except ImportError:
        raise ImportError("trainer.integrations.lightning needs Lightning >= 2: pip install '.[lightning]'")


def samples_in(batch: Any) -> int:
    """The leading dimension of the batch's first tensor (tuple, list or dict batches); 0 if it has none."""
    if hasattr(batch, "shape") and len(batch.shape) > 0:
        return int(batch.shape[0])
    items = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else ()
    for item in items:
        found = samples_in(item)
        if found:
            return found
    return 0


def loader_config(loader: Any) -> Dict[str, str]:
    """run_info's loader labels from a DataLoader ("none" where it has no such setting)."""
    def value(name: str) -> str:
        return label_value(getattr(loader, name, None))
    dataset = getattr(loader, "dataset", None)
    return {"dataset": type(dataset).__name__ if dataset is not None else "unknown",
            "dataset_samples": samples_of(dataset),
            "batch_size": value("batch_size"), "workers": value("num_workers"),
            "prefetch_factor": value("prefetch_factor"), "pin_memory": value("pin_memory")}


class EdgescopeCallback(Callback):
    """Per-step fetch stall and compute, per-epoch windows and energy, served like edgescope-train's.
    Keyword arguments as the CLI's flags: ``metrics_port`` -1 serves nothing, 0 any free port
    (``.recorder.server.port``); ``labels`` extra run_info labels. ``close()`` stops the endpoint."""

    def __init__(self, **options: Any) -> None:
        super().__init__()
        self.recorder = RunRecorder(**options)
        self._global_step = 0

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        config = loader_config(trainer.train_dataloader)
        config.update(model=type(pl_module).__name__, framework="lightning", precision=str(trainer.precision),
                      gradient_accumulation_steps=str(trainer.accumulate_grad_batches))
        self.recorder.start(pl_module.device, config)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._global_step = trainer.global_step
        self.recorder.begin_epoch(trainer.current_epoch, trainer.train_dataloader)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.recorder.batch_arrived(samples_in(batch), split_load_times(batch)[1])

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        stepped = trainer.global_step != self._global_step
        self._global_step = trainer.global_step
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self.recorder.micro_batch_done(stepped, loss if hasattr(loss, "detach") else None)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.recorder.end_epoch()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.recorder.finish()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.recorder.finish()

    def close(self) -> None:
        self.recorder.close()

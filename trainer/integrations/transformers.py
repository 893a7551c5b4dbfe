"""``EdgescopeCallback`` for the Hugging Face ``Trainer``: edgescope-train's series from ``Trainer.train``.

    from trainer.integrations.transformers import EdgescopeCallback
    trainer = transformers.Trainer(..., callbacks=[EdgescopeCallback(run_id="my-run", metrics_port=9946)])

What the hooks measure (transformers >= 4.46's loop): for each optimizer step the Trainer first fetches all
of its ``gradient_accumulation_steps`` micro-batches, then calls ``on_step_begin``, runs forward and
backward on each (moving it to the device), steps the optimizer and calls ``on_step_end``. So a step's
fetch stall is from the previous ``on_step_end`` to ``on_step_begin`` (the wait for all its micro-batches,
plus the Trainer's logging, checkpointing and evaluation after the previous step when they fall due), and
its compute from ``on_step_begin`` to ``on_step_end`` (the copies to the device included). Samples per step
are the configured ``train_batch_size`` x accumulation, capped by what is left of a sized dataset in the
epoch (a dropped last partial batch, ``dataloader_drop_last``, may be counted once); per process.
"""
from typing import Any, Dict, Optional

from trainer.integrations.recorder import RunRecorder, label_value, samples_of

try:
    from transformers import TrainerCallback
except ImportError:
    raise ImportError("trainer.integrations.transformers needs transformers and accelerate: pip install '.[hf]'")


def precision_of(args: Any) -> str:
    """The HF TrainingArguments' mixed precision: bf16, fp16 or 32."""
    return "bf16" if getattr(args, "bf16", False) else "fp16" if getattr(args, "fp16", False) else "32"


class EdgescopeCallback(TrainerCallback):
    """Per-step fetch stall and compute, per-epoch windows and energy, served like edgescope-train's.
    Keyword arguments: ``trainer.integrations.recorder.RunRecorder``'s (the CLI's flags); ``close()``
    stops the endpoint."""

    def __init__(self, **options: Any) -> None:
        self.recorder = RunRecorder(**options)
        self._samples_left = None  # type: Any

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        dataset = getattr(kwargs.get("train_dataloader"), "dataset", None)
        config = {"model": type(model).__name__ if model is not None else "unknown", "framework": "transformers",
                  "dataset": type(dataset).__name__ if dataset is not None else "unknown",
                  "dataset_samples": samples_of(dataset),
                  "batch_size": label_value(args.per_device_train_batch_size),
                  "workers": label_value(args.dataloader_num_workers),
                  "prefetch_factor": label_value(args.dataloader_prefetch_factor),
                  "pin_memory": label_value(args.dataloader_pin_memory), "precision": precision_of(args),
                  "gradient_accumulation_steps": str(args.gradient_accumulation_steps)}
        self.recorder.start(args.device, config)

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        try:
            self._samples_left = len(kwargs["train_dataloader"].dataset)
        except (KeyError, AttributeError, TypeError):  # an iterable dataset has no length
            self._samples_left = None
        self.recorder.begin_epoch(int(round(state.epoch or 0)))

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        samples = args.train_batch_size * args.gradient_accumulation_steps
        if self._samples_left is not None:
            samples = min(samples, self._samples_left)
            self._samples_left -= samples
        self.recorder.batch_arrived(samples)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.recorder.micro_batch_done(True)

    def on_log(self, args: Any, state: Any, control: Any, logs: Optional[Dict[str, Any]] = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self.recorder.metrics.loss.set(logs["loss"])

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.recorder.end_epoch()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.recorder.finish()

    def close(self) -> None:
        self.recorder.close()

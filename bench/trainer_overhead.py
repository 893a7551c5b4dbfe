"""What does edgescope's per-batch instrumentation cost? (target: <= 1.01)

The same training loop, same model, same data and the same augmentation
seeds, run uninstrumented ("plain") and instrumented exactly as
edgescope-train does it (StepMeter + TrainMetrics), interleaved in ABBA order
so that drift of a shared machine cancels. Printed as ratios: of CPU time
(process_time, one torch thread, no workers: what the instrumentation costs,
robust to other jobs on a shared machine) and of wall time (min over runs,
the least disturbed run of each kind). "plain" is the loop without edgescope;
"none" is the same loop through StepMeter with --timing none, so instrumented/none
isolates the timing itself. The instrumented loop's loader is timed as
edgescope-train's (make_loader(timed=True): file reads vs decode/augment/collate
per batch, in-process with no workers, so CPU time sees that cost too).

The framework callbacks (trainer/integrations) are measured the same way where
Lightning / transformers are installed: the same model and data through
``Trainer.fit`` / ``Trainer.train`` without and with ``EdgescopeCallback``, ABBA
rounds, plus the callbacks' shared recorder alone around an empty step.

    PYTHONPATH=. python3 bench/trainer_overhead.py [--model mobilenet_v3_small --batch-size 16]
"""
import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Dict, List

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from torch.utils.data.dataloader import default_collate  # noqa: E402

from trainer.data import TimedSamples, build_dataset, collate_timed, make_loader  # noqa: E402
from trainer.integrations.recorder import RunRecorder  # noqa: E402
from trainer.meter import LoadTimes, StepMeter  # noqa: E402
from trainer.metrics import TrainMetrics  # noqa: E402
from trainer.models import build_model  # noqa: E402
from trainer.synthetic import write_cifar10  # noqa: E402


class Setup:
    """Model, optimizer and a CIFAR-10 loader (synthetic files, reference transforms)."""

    def __init__(self, model: str, batch_size: int, batches: int, workers: int, device: torch.device,
                 data_dir: str) -> None:
        write_cifar10(data_dir, train_images=batch_size * batches, test_images=1)
        dataset = build_dataset("cifar10", data_dir)
        # plain and none: the untimed loader; lazy: the timed one, as edgescope-train picks them
        self.loaders = {timed: make_loader(dataset, batch_size, workers, 2, device.type == "cuda", seed=0,
                                           timed=timed) for timed in (False, True)}
        self.device = device
        self.model = build_model(model).to(device).train()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.criterion = nn.CrossEntropyLoss()

    def train_step(self, images: torch.Tensor, targets: torch.Tensor, running_loss: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        loss = self.criterion(self.model(images), targets)
        loss.backward()
        self.optimizer.step()
        running_loss += loss.detach()

    def epoch(self, mode: str) -> Dict[str, float]:
        """One pass over the loader; ``mode`` is "plain" (no edgescope at all) or a --timing mode.
        Returns wall and CPU seconds (device work included) and, when measured, stall and compute sums."""
        loader = self.loaders[mode not in ("plain", "none")]
        loader.generator.manual_seed(0)  # identical batches and augmentation in every run
        torch.manual_seed(0)
        running_loss = torch.zeros((), device=self.device)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        began, cpu_began = time.perf_counter(), time.process_time()
        if mode == "plain":
            for images, targets in loader:
                images = images.to(self.device, non_blocking=True)
                targets = targets.to(self.device, non_blocking=True)
                self.train_step(images, targets, running_loss)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            return {"wall_s": time.perf_counter() - began, "cpu_s": time.process_time() - cpu_began}
        metrics = TrainMetrics("bench")
        meter = StepMeter(self.device, mode, on_batch=metrics.observe_batch)
        meter.begin_window("epoch")
        for images, targets in meter.wrap(loader, device=self.device):
            with meter.step():
                self.train_step(images, targets, running_loss)
            metrics.samples.inc(len(targets))
        window = meter.end_window("epoch")  # waits for the device in every mode
        return {"wall_s": time.perf_counter() - began, "cpu_s": time.process_time() - cpu_began,
                "stall_s": window.fetch_stall_s,
                "compute_s": window.compute_s}


def interleave(setup: Setup, modes: List[str], rounds: int) -> Dict[str, List[Dict[str, float]]]:
    """One warm-up pass per mode, then ``rounds`` rounds alternating the order (ABBA...)."""
    for mode in modes:
        setup.epoch(mode)
    runs = {mode: [] for mode in modes}  # type: Dict[str, List[Dict[str, float]]]
    for i in range(rounds):
        for mode in (modes if i % 2 == 0 else list(reversed(modes))):
            runs[mode].append(setup.epoch(mode))
    return runs


def meter_cost_per_batch_s(batches: int = 20000) -> float:
    """The instrumentation alone around an empty step, batches carrying LoadTimes to split the stall with:
    its cost per batch, free of training noise."""
    class Loader(list):
        """Batches as 4 workers with prefetch 2 send them: the stall split looks 8 batches ahead."""
        num_workers = 4
        prefetch_factor = 2

    metrics = TrainMetrics("bench")
    meter = StepMeter("cpu", "lazy", on_batch=metrics.observe_batch)
    now = time.monotonic()
    loaded = Loader([(None, None, LoadTimes(0.002, 0.001, i % 4, now + i, now + i + 0.003, 0.001, 65536))
                     for i in range(batches)])
    meter.begin_window("epoch")  # with its timeline, as edgescope-train records every epoch
    began = time.perf_counter()
    for _ in meter.wrap(loaded):
        with meter.step():
            pass
        metrics.samples.inc(16)
    meter.end_window("epoch")
    instrumented = time.perf_counter() - began
    began = time.perf_counter()
    for _ in loaded:
        pass
    return (instrumented - (time.perf_counter() - began)) / batches


def recorder_cost_per_step_s(steps: int = 20000) -> float:
    """The callbacks' recorder alone (one micro-batch per step) around an empty step, per step."""
    recorder = RunRecorder(run_id="bench", metrics_port=-1)
    recorder.start("cpu", {"model": "none", "dataset": "none", "batch_size": "16", "workers": "0",
                           "prefetch_factor": "none", "pin_memory": "false", "framework": "none", "precision": "32",
                           "gradient_accumulation_steps": "1"})
    recorder.begin_epoch(0)
    began = time.perf_counter()
    for _ in range(steps):
        recorder.batch_arrived(16)
        recorder.micro_batch_done(True)
    instrumented = time.perf_counter() - began
    recorder.end_epoch()
    recorder.finish()
    began = time.perf_counter()
    for _ in range(steps):
        pass
    return (instrumented - (time.perf_counter() - began)) / steps


def lightning_epoch(setup: Setup, with_callback: bool) -> Dict[str, float]:
    """One Trainer.fit epoch over the setup's loader, with or without EdgescopeCallback."""
    import lightning
    from trainer.integrations.lightning import EdgescopeCallback

    class Module(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = setup.model

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            images, targets = batch
            return setup.criterion(self.model(images), targets)

        def configure_optimizers(self) -> Any:
            return setup.optimizer

    callbacks = [EdgescopeCallback(run_id="bench", metrics_port=-1)] if with_callback else []
    trainer = lightning.Trainer(max_epochs=1, callbacks=callbacks, accelerator="cpu", logger=False,
                                enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    setup.loaders[False].generator.manual_seed(0)
    torch.manual_seed(0)
    began, cpu_began = time.perf_counter(), time.process_time()
    trainer.fit(Module(), setup.loaders[False])
    return {"wall_s": time.perf_counter() - began, "cpu_s": time.process_time() - cpu_began}


def transformers_epoch(setup: Setup, with_callback: bool, output_dir: str) -> Dict[str, float]:
    """One Trainer.train epoch over the setup's dataset, with or without EdgescopeCallback."""
    import transformers
    from trainer.integrations.transformers import EdgescopeCallback

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = setup.model

        def forward(self, images: torch.Tensor, labels: torch.Tensor) -> Dict[str, torch.Tensor]:
            return {"loss": setup.criterion(self.model(images), labels)}

    def collate(items: List[Any]) -> Dict[str, torch.Tensor]:
        return {"images": torch.stack([image for image, _ in items]), "labels": torch.tensor([t for _, t in items])}

    args = transformers.TrainingArguments(output_dir=output_dir, num_train_epochs=1, report_to=[],
                                          per_device_train_batch_size=setup.loaders[False].batch_size, save_strategy="no",
                                          use_cpu=True, disable_tqdm=True, seed=0, logging_strategy="no")
    callbacks = [EdgescopeCallback(run_id="bench", metrics_port=-1)] if with_callback else []
    trainer = transformers.Trainer(model=Model(), args=args, train_dataset=setup.loaders[False].dataset,
                                   data_collator=collate, callbacks=callbacks)
    began, cpu_began = time.perf_counter(), time.process_time()
    trainer.train()
    return {"wall_s": time.perf_counter() - began, "cpu_s": time.process_time() - cpu_began}


def print_ratios(label: str, runs: Dict[str, List[Dict[str, float]]], instrumented: str, baseline: str) -> None:
    """Per-round and min/min ratios of ``instrumented`` over ``baseline``, CPU and wall time."""
    for clock in ("cpu_s", "wall_s"):
        base = [r[clock] for r in runs[baseline]]
        measured = [r[clock] for r in runs[instrumented]]
        per_round = sorted(b / a for a, b in zip(base, measured))
        print("{} ({}): median of rounds {:.4f} (quartiles {:.4f}..{:.4f}), min/min {:.4f}; "
              "medians {:.4f} s vs {:.4f} s".format(
                  label, "CPU time" if clock == "cpu_s" else "wall time", statistics.median(per_round),
                  per_round[len(per_round) // 4], per_round[3 * len(per_round) // 4],
                  min(measured) / min(base), statistics.median(measured), statistics.median(base)))


def framework_rounds(setup: Setup, epoch: Any, rounds: int) -> Dict[str, List[Dict[str, float]]]:
    """ABBA rounds of ``epoch(setup, with_callback)`` after one warm-up of each."""
    runs = {"without": [], "with": []}  # type: Dict[str, List[Dict[str, float]]]
    epoch(setup, False)
    epoch(setup, True)
    for i in range(rounds):
        for mode in (("without", "with") if i % 2 == 0 else ("with", "without")):
            runs[mode].append(epoch(setup, mode == "with"))
    return runs


def load_timing_cost_per_batch_s(batch_size: int, batches: int = 2000) -> float:
    """What timing the samples and the collate adds to making a batch (of small tensors, so the rest is cheap):
    TimedSamples + collate_timed against plain indexing + default_collate, min of 5 tries each."""
    items = [(torch.zeros(3, 32, 32), i % 10) for i in range(batch_size)]
    timed = TimedSamples(items)

    def best(make_batch: Any) -> float:
        tries = []
        for _ in range(5):
            began = time.perf_counter()
            for _ in range(batches):
                make_batch()
            tries.append(time.perf_counter() - began)
        return min(tries)

    plain = best(lambda: default_collate([items[i] for i in range(batch_size)]))
    return (best(lambda: collate_timed([timed[i] for i in range(batch_size)])) - plain) / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenet_v3_small")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=10, help="batches per run")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--workers", type=int, default=0, help="0: all work in this process, so CPU time sees it")
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 1 keeps spinning threads out")
    parser.add_argument("--framework-rounds", type=int, default=10,
                        help="ABBA rounds per framework callback (0: skip them)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frameworks = {}  # type: Dict[str, Dict[str, List[Dict[str, float]]]]
    with tempfile.TemporaryDirectory() as data_dir:
        setup = Setup(args.model, args.batch_size, args.batches, args.workers, torch.device("cpu"), data_dir)
        runs = interleave(setup, ["plain", "none", "lazy"], args.rounds)
        if args.framework_rounds > 0 and importlib.util.find_spec("lightning"):
            frameworks["Lightning"] = framework_rounds(setup, lightning_epoch, args.framework_rounds)
        if args.framework_rounds > 0 and importlib.util.find_spec("transformers"):
            frameworks["transformers"] = framework_rounds(
                setup, lambda s, w: transformers_epoch(s, w, os.path.join(data_dir, "hf")), args.framework_rounds)
    cost = meter_cost_per_batch_s()
    load_cost = load_timing_cost_per_batch_s(args.batch_size)
    print("{} batch {} on CPU ({} torch threads), {} rounds x {} batches, {} workers".format(
        args.model, args.batch_size, args.threads, args.rounds, args.batches, args.workers))
    for baseline in ("plain", "none"):
        print_ratios("instrumented/" + baseline, runs, "lazy", baseline)
    step_s = min(r["wall_s"] for r in runs["plain"]) / args.batches
    print("instrumentation alone: {:.1f} us per batch in the loop + {:.1f} us per batch of {} timing its making "
          "(worker side) = ratio {:.5f} on a {:.1f} ms batch".format(
              cost * 1e6, load_cost * 1e6, args.batch_size, 1 + (cost + load_cost) / step_s, step_s * 1e3))
    for name, framework_runs in frameworks.items():
        print_ratios("{} with/without EdgescopeCallback, 1 epoch".format(name), framework_runs, "with", "without")
    recorder = recorder_cost_per_step_s()
    print("callbacks' recorder alone: {:.1f} us per step = ratio {:.5f} on a {:.1f} ms batch".format(
        recorder * 1e6, 1 + recorder / step_s, step_s * 1e3))


if __name__ == "__main__":
    main()

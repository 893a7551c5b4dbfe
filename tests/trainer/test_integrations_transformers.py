"""trainer.integrations.transformers: a real Hugging Face Trainer.train of a tiny CPU model, measured by the callback."""
import json
import time

import pytest
import torch.nn as nn

from tests.trainer.integration_checks import (STEP_SLEEP_S, SlowDataset, check_exposition, check_lower_bounds,
                                              check_report, python_prints, scrape)

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
from trainer.integrations.transformers import EdgescopeCallback  # noqa: E402


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 2)

    def forward(self, x, labels=None):
        time.sleep(STEP_SLEEP_S)
        logits = self.layer(x)
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


def train(callback: EdgescopeCallback, tmp_path, accumulate: int) -> None:
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"), num_train_epochs=2, per_device_train_batch_size=4,
        gradient_accumulation_steps=accumulate, report_to=[], save_strategy="no", logging_steps=1,
        use_cpu=True, disable_tqdm=True)
    transformers.Trainer(model=Tiny(), args=args, train_dataset=SlowDataset(as_dict=True),
                         callbacks=[callback]).train()


def test_train_serves_one_batch_per_optimizer_step(tmp_path):
    results = tmp_path / "results.jsonl"
    callback = EdgescopeCallback(run_id="hf-run", metrics_port=0, metrics_addr="127.0.0.1", results=str(results),
                                 labels={"site": "lab"})
    try:
        train(callback, tmp_path, accumulate=2)  # 5 micro-batches an epoch: steps of 8, 8 and 4 samples
        served = scrape(callback.recorder.server.port)
    finally:
        callback.close()
    found = check_exposition(served, "hf-run", steps=6, samples_per_epoch=[20, 20], run_info={
        "framework": "transformers", "model": "Tiny", "dataset": "SlowDataset", "dataset_samples": "20",
        "batch_size": "4", "workers": "0", "precision": "32", "gradient_accumulation_steps": "2",
        "torch_device": "cpu", "site": "lab"})
    check_lower_bounds(found, micro_batches_per_epoch=5)
    assert 0 < found["edgescope_train_loss"][0][1] < 10  # from the Trainer's own log
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(r["epoch"], r["complete"], r["batches"], r["samples"]) for r in lines] == [(0, True, 3, 20),
                                                                                      (1, True, 3, 20)]


def test_edgescope_report_reads_a_transformers_run(tmp_path):
    callback = EdgescopeCallback(run_id="hf-report", metrics_port=0, metrics_addr="127.0.0.1")
    try:
        train(callback, tmp_path, accumulate=1)
        check_report(tmp_path, callback.recorder.server.port, "hf-report", epochs=2)
    finally:
        callback.close()


def test_importing_trainer_needs_no_framework():
    code = ("import sys, trainer, trainer.integrations, trainer.integrations.recorder; "
            "print(sorted(m for m in ('transformers', 'lightning', 'pytorch_lightning', 'accelerate') "
            "if m in sys.modules))")
    assert python_prints(code) == "[]"

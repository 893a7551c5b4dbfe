"""trainer.integrations.lightning: a real Lightning Trainer.fit of a tiny CPU model, measured by the callback."""
import json
import time

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from tests.trainer.integration_checks import (STEP_SLEEP_S, SlowDataset, check_exposition, check_lower_bounds,
                                              check_report, python_prints, samples_of, scrape)

lightning = pytest.importorskip("lightning")
from trainer.integrations.lightning import EdgescopeCallback  # noqa: E402


class Tiny(lightning.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        features, targets = batch
        time.sleep(STEP_SLEEP_S)
        return nn.functional.cross_entropy(self.layer(features), targets)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(callback: EdgescopeCallback, accumulate: int, epochs: int = 2) -> None:
    trainer = lightning.Trainer(max_epochs=epochs, accumulate_grad_batches=accumulate, callbacks=[callback],
                                accelerator="cpu", logger=False, enable_checkpointing=False,
                                enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Tiny(), DataLoader(SlowDataset(), batch_size=4))


def test_fit_serves_one_batch_per_optimizer_step(tmp_path):
    results, textfile = tmp_path / "results.jsonl", tmp_path / "run.prom"
    callback = EdgescopeCallback(run_id="pl-run", metrics_port=0, metrics_addr="127.0.0.1", results=str(results),
                                 metrics_textfile=str(textfile), labels={"site": "lab"})
    try:
        fit(callback, accumulate=2)  # 5 batches an epoch: optimizer steps after 2, 4 and 5
        served = scrape(callback.recorder.server.port)
    finally:
        callback.close()
    found = check_exposition(served, "pl-run", steps=6, samples_per_epoch=[20, 20], run_info={
        "framework": "lightning", "model": "Tiny", "dataset": "SlowDataset", "dataset_samples": "20",
        "batch_size": "4", "workers": "0", "precision": "32-true", "gradient_accumulation_steps": "2",
        "torch_device": "cpu", "site": "lab"})
    check_lower_bounds(found, micro_batches_per_epoch=5)
    assert 0 < found["edgescope_train_loss"][0][1] < 10  # the last epoch's mean loss, not a placeholder
    lines = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(r["epoch"], r["complete"], r["batches"], r["samples"]) for r in lines] == [(0, True, 3, 20),
                                                                                      (1, True, 3, 20)]
    written = samples_of(textfile.read_text())
    assert written["edgescope_train_compute_seconds_count"] == found["edgescope_train_compute_seconds_count"]


def test_edgescope_report_reads_a_lightning_run(tmp_path):
    callback = EdgescopeCallback(run_id="pl-report", metrics_port=0, metrics_addr="127.0.0.1")
    try:
        fit(callback, accumulate=1)
        check_report(tmp_path, callback.recorder.server.port, "pl-report", epochs=2)
    finally:
        callback.close()


def test_a_reserved_label_is_refused():
    with pytest.raises(ValueError, match="framework"):
        EdgescopeCallback(metrics_port=-1, labels={"framework": "mine"})


def test_without_lightning_pytorch_lightning_serves():
    pytest.importorskip("pytorch_lightning")
    code = ("import sys; sys.modules['lightning'] = None; import pytorch_lightning; "
            "from trainer.integrations.lightning import EdgescopeCallback; "
            "print(issubclass(EdgescopeCallback, pytorch_lightning.Callback))")
    assert python_prints(code) == "True"


class TimedTiny(Tiny):
    def training_step(self, batch, batch_idx):
        features, targets, _load_times = batch  # a timed loader's batches carry their LoadTimes last
        return super().training_step((features, targets), batch_idx)


def test_a_timed_loader_gives_the_callback_its_stall_split_timeline_and_what_ifs(tmp_path):
    from trainer.data import TimedSamples, collate_timed
    results = tmp_path / "results.jsonl"
    callback = EdgescopeCallback(run_id="pl-timed", metrics_port=-1, results=str(results))
    loader = DataLoader(TimedSamples(SlowDataset()), batch_size=4, num_workers=2, collate_fn=collate_timed)
    try:
        trainer = lightning.Trainer(max_epochs=2, callbacks=[callback], accelerator="cpu", logger=False,
                                    enable_checkpointing=False, enable_progress_bar=False,
                                    enable_model_summary=False)
        trainer.fit(TimedTiny(), loader)
    finally:
        callback.close()
    for record in (json.loads(line) for line in results.read_text().splitlines()):
        assert record["fetch_stall_storage_s"] + record["fetch_stall_preprocess_s"] == pytest.approx(
            record["fetch_stall_s"])
        assert record["preprocess_s"] > 0
        predicted = record["predicted_duration_s"]
        assert {"dataset_cached", "workers_doubled", "compute_speedup=2"} <= set(predicted)
        assert 0 < predicted["compute_speedup=2"] < record["duration_s"], record["prediction_basis"]

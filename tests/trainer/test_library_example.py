"""The docs' library example (docs/your-training-loop.md) runs as written on a tiny model (port 0 instead of 9946)."""
import os
import re

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from .conftest import REPO


def test_docs_example_runs_and_fills_the_histograms(capsys):
    with open(os.path.join(REPO, "docs", "your-training-loop.md"), encoding="utf-8") as f:
        page = f.read()
    code = re.search(r"## StepMeter in a loop of your own.*?```python\n(.*?)```", page, re.S).group(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    names = {"device": torch.device("cpu"), "epochs": 2, "model": model, "criterion": nn.CrossEntropyLoss(),
             "optimizer": torch.optim.SGD(model.parameters(), lr=0.1),
             "loader": DataLoader(TensorDataset(torch.randn(20, 3, 2, 2), torch.randint(0, 3, (20,))), batch_size=4)}
    exec(compile(code.replace("9946", "0"), "docs/your-training-loop.md", "exec"), names)
    names["server"].close()
    assert len(capsys.readouterr().out.strip().splitlines()) == 2  # one line per epoch
    count = names["metrics"].registry.get_sample_value("edgescope_train_compute_seconds_count", {"run_id": "my-run"})
    assert count == 10

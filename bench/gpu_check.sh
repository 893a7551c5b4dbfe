#!/usr/bin/env bash
# One prepared device check on a CUDA machine (run from the repo root; writes to ${OUT:-/tmp/gpu_check}).
# The CUDA paths CI cannot run: the trainer on cuda:0 with lazy and sync timing, its per-epoch energy read from
# a real exporter whose power source is NVML (the GPU's own counter), and bench/gpu_timing.py's lazy/sync/none
# ratios. Needs torch + torchvision with CUDA, prometheus-client, pyyaml, requests, nvidia-ml-py.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'vision', torchvision.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0))"
DATA=$(mktemp -d)
python3 -m trainer.datasets_cli cifar10 --out "$DATA" --train-images 8000 --test-images 100 >/dev/null
python3 -m exporter.cli --power-source nvml --interval 0.5 --web.listen-address 127.0.0.1:19945 \
    >"$OUT/exporter.log" 2>&1 &
EXPORTER=$!
trap 'kill $EXPORTER 2>/dev/null' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:19945/metrics >/dev/null && break; sleep 0.2; done
curl -s http://127.0.0.1:19945/metrics | grep -E '^edgescope_(board_power_watts|board_energy_joules_total|power_source_info|source_up)' | head
for timing in lazy sync; do
    echo "== edgescope-train --device cuda:0 --timing $timing"
    timeout 100 python3 -m trainer.cli --data-dir "$DATA" --model resnet18 --device cuda:0 --epochs 3 \
        --max-batches 300 --workers 4 --pin-memory --timing "$timing" --metrics-port 0 --linger 0 \
        --exporter-url http://127.0.0.1:19945/metrics --results "$OUT/train_$timing.jsonl" \
        --timeline-dir "$OUT/timelines" 2>&1 | grep -v "step "
done
echo "== bench/gpu_timing.py"
timeout 240 python3 bench/gpu_timing.py --device cuda:0 --model resnet18 --batches 150 --rounds 8 --workers 4 \
    2>&1 | tee "$OUT/gpu_timing.txt"
echo "== Lightning EdgescopeCallback on cuda (lazy CUDA events through StepMeter)"
timeout 90 python3 - "$OUT/lightning.jsonl" <<'PY' 2>&1 | grep -v -i "warn" | tail -8
import json, sys
import lightning, torch
from trainer.integrations.lightning import EdgescopeCallback

class Tiny(lightning.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 512), torch.nn.ReLU(),
                                       torch.nn.Linear(512, 10))

    def training_step(self, batch, batch_idx):
        images, targets = batch
        return torch.nn.functional.cross_entropy(self.net(images), targets)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)

data = torch.utils.data.TensorDataset(torch.randn(512, 3, 32, 32), torch.randint(0, 10, (512,)))
callback = EdgescopeCallback(run_id="gpu-lightning", metrics_port=-1, results=sys.argv[1])
lightning.Trainer(max_epochs=2, accelerator="gpu", devices=1, callbacks=[callback], logger=False,
                  enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False).fit(
    Tiny(), torch.utils.data.DataLoader(data, batch_size=16, num_workers=2))
callback.close()
for line in open(sys.argv[1]):
    r = json.loads(line)
    print({k: r.get(k) for k in ("epoch", "batches", "duration_s", "fetch_stall_s", "compute_s", "torch_device")})
PY

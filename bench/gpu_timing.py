"""One shot on a CUDA machine: what do lazy CUDA events, per-batch
torch.cuda.synchronize() and no timing cost, and do lazy and sync agree?

Same model, data (synthetic CIFAR-10, reference transforms, pinned memory) and
loop as edgescope-train, the three --timing modes interleaved in ABBA order.
Prints wall-time ratios against ``none``, each mode's stall and compute sums,
and how far lazy's stall and compute are from sync's. Needs only torch,
torchvision and prometheus-client next to this checkout:

    python3 bench/gpu_timing.py [--device cuda:0 --model resnet18 --batches 200 --rounds 4 --workers 4]

Without CUDA it stops with one line (``--device cpu`` tries the script out).
"""
import argparse
import json
import os
import statistics
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from trainer_overhead import Setup, interleave  # noqa: E402

MODES = ["none", "lazy", "sync"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--batches", type=int, default=200, help="batches per run")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu only to try the script out")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_timing: torch {} sees no CUDA device; run this on a CUDA machine (or --device cpu to try it)"
              .format(torch.__version__), file=sys.stderr)
        sys.exit(2)
    if device.index is not None:
        torch.cuda.set_device(device)  # the loop's synchronize() and events then use this GPU
    with tempfile.TemporaryDirectory() as data_dir:
        setup = Setup(args.model, args.batch_size, args.batches, args.workers, device, data_dir)
        runs = interleave(setup, MODES, args.rounds)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print("{} batch {} on {}: {} rounds x {} batches, {} workers".format(
        args.model, args.batch_size, name, args.rounds, args.batches, args.workers))
    baseline = statistics.median(r["wall_s"] for r in runs["none"])
    summary = {"device": name, "model": args.model, "batch_size": args.batch_size, "batches": args.batches}
    for mode in MODES:
        wall = statistics.median(r["wall_s"] for r in runs[mode])
        line = {"wall_s": wall, "ratio_to_none": wall / baseline}
        if mode != "none":
            line["stall_s"] = statistics.median(r["stall_s"] for r in runs[mode])
            line["compute_s"] = statistics.median(r["compute_s"] for r in runs[mode])
        summary[mode] = line
        print("{:5s} wall {:.3f} s  ratio to none {:.4f}{}".format(mode, wall, wall / baseline, "" if mode == "none"
              else "  stall {:.3f} s  compute {:.3f} s".format(line["stall_s"], line["compute_s"])))
    for key in ("stall_s", "compute_s"):
        if summary["sync"][key] > 0:
            summary["lazy_to_sync_" + key[:-2]] = summary["lazy"][key] / summary["sync"][key]
    print("lazy/sync: stall {}  compute {}".format(*("{:.4f}".format(summary[k]) if k in summary else "-"
                                                     for k in ("lazy_to_sync_stall", "lazy_to_sync_compute"))))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

"""A stand-in trainer for the runner's tests: accepts exactly the trainer
issue's flags (plus the repeatable --label KEY=VALUE), records its
command line as JSON in $FAKE_TRAINER_LOG, writes one results line per epoch,
and misbehaves on request: $FAKE_TRAINER_FAIL=<run_id> exits 3 for that run;
$FAKE_TRAINER_HANG=<run_id> touches $FAKE_TRAINER_HANG_MARK and sleeps; $FAKE_TRAINER_LATIN1 set prints a
Latin-1 line (as a wrapper on a Latin-1 locale would)."""
import argparse
import json
import os
import sys
import time

p = argparse.ArgumentParser()
for flag in ("--model", "--dataset", "--data-dir", "--run-id", "--device-name", "--results"):
    p.add_argument(flag, required=True)
for flag in ("--batch-size", "--workers", "--prefetch-factor", "--epochs", "--metrics-port", "--max-batches"):
    p.add_argument(flag, type=int)
p.add_argument("--label", action="append", default=[])
p.add_argument("--linger", type=float)
p.add_argument("--exporter-url")
p.add_argument("--evict-dataset", action="store_true")
p.add_argument("--synthetic-input", action="store_true")
args = p.parse_args()
with open(os.environ["FAKE_TRAINER_LOG"], "a") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "labels": dict(x.split("=", 1) for x in args.label)}) + "\n")
if os.environ.get("FAKE_TRAINER_LATIN1"):
    sys.stdout.buffer.write("fake trainer: café\n".encode("latin-1"))
    sys.stdout.flush()
if os.environ.get("FAKE_TRAINER_HANG") == args.run_id:
    open(os.environ["FAKE_TRAINER_HANG_MARK"], "w").close()
    time.sleep(60)
if os.environ.get("FAKE_TRAINER_FAIL") == args.run_id:
    print("fake trainer: failing on purpose")
    sys.exit(3)
with open(args.results, "a") as f:
    for epoch in range(args.epochs):
        f.write(json.dumps({"run_id": args.run_id, "epoch": epoch}) + "\n")
print("fake trainer: {} done".format(args.run_id))

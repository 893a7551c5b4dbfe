"""Exporter benchmark: scrape latency, exporter CPU cost, and page-cache scan speed vs vmtouch.

  PYTHONPATH=$PWD python3 bench/exporter_bench.py [--seconds 30] [--files 20000]

1. Starts the exporter with every source on at 1 Hz (tegrastats replaying the
   demo log, diskstats, thermal on a fake Orin sysfs tree, page cache on the
   20,000-file tree) and a scrape every second, like a 1 s Prometheus job:
   reports the exporter's CPU seconds per wall second (utime+stime from
   /proc/PID/stat). Then 300 back-to-back scrapes: latency p50/p99.
2. Times page-cache scans of the same 20,000-file tree by vmtouch (its own
   "Elapsed", so process start is not counted against it) and by the
   exporter's scanner with cachestat and with mincore, interleaved, median of
   5 each, and prints ours/vmtouch as ratios (targets: <= 1.0 cachestat, <= 2.0 mincore).
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import requests

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from exporter.pagecache import Scanner  # noqa: E402
from tests.exporter.conftest import free_port, make_orin_sysfs  # noqa: E402


def make_tree(root: str, files: int) -> None:
    blob = os.urandom(16384)
    for i in range(files):
        d = os.path.join(root, "class{:03d}".format(i % 100))
        if i < 100:
            os.makedirs(d)
        with open(os.path.join(d, "img{:05d}.bin".format(i)), "wb") as f:
            f.write(blob[: 1024 + (i * 37) % 12288])


def cpu_seconds(pid: int) -> float:
    with open("/proc/{}/stat".format(pid)) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_exporter(tree: str, work: str, seconds: float) -> None:
    port = free_port()
    sysfs = make_orin_sysfs(os.path.join(work, "sys"))
    env = dict(os.environ, PYTHONPATH=REPO)
    cmd = [sys.executable, "-m", "exporter.cli", "--web.listen-address", "127.0.0.1:{}".format(port),
           "--interval", "1", "--power-source", "tegrastats",
           "--tegrastats-file", os.path.join(REPO, "exporter", "demo", "tegrastats_nano_warming.log"),
           "--sysfs-root", sysfs, "--dataset", tree, "--pagecache-interval", "30", "--log.level", "warn"]
    proc = subprocess.Popen(cmd, env=env)
    url = "http://127.0.0.1:{}/metrics".format(port)
    try:
        while True:
            try:
                if "edgescope_dataset_files" in requests.get(url, timeout=2).text:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        session = requests.Session()
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        while time.monotonic() - t0 < seconds:
            session.get(url, timeout=5)
            time.sleep(1.0)
        cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
        lat = []
        for _ in range(300):
            s = time.perf_counter()
            r = session.get(url, timeout=5)
            lat.append(time.perf_counter() - s)
            assert r.status_code == 200
        lat.sort()
        series = sum(1 for ln in r.text.splitlines() if ln and not ln.startswith("#"))
    finally:
        proc.terminate()
        proc.wait()
    print("exporter, all sources on at 1 Hz, 1 scrape/s, {:.0f} s: CPU {:.4f} s per wall second ({} series per scrape)".format(
        t1 - t0, (cpu1 - cpu0) / (t1 - t0), series))
    print("scrape latency over 300 scrapes: p50 {:.2f} ms, p99 {:.2f} ms".format(
        lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99) - 1] * 1e3))


def vmtouch_elapsed(tree: str) -> float:
    out = subprocess.run(["vmtouch", "-m", "1000G", tree], stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    return float(re.search(r"Elapsed: ([\d.]+) seconds", out).group(1))


def bench_pagecache(tree: str, rounds: int = 5) -> None:
    scanners = {m: Scanner(m) for m in ("cachestat", "mincore")}
    times = {"vmtouch": [], "cachestat": [], "mincore": []}
    vmtouch_elapsed(tree)  # warm the dentry/inode caches for everyone
    for _ in range(rounds):
        times["vmtouch"].append(vmtouch_elapsed(tree))
        for m, sc in scanners.items():
            s = time.perf_counter()
            sc.scan(tree)
            times[m].append(time.perf_counter() - s)
    med = {k: statistics.median(v) for k, v in times.items()}
    print("page-cache scan of {} files, median of {}: vmtouch {:.1f} ms, cachestat {:.1f} ms, mincore {:.1f} ms".format(
        Scanner().scan(tree).files, rounds, med["vmtouch"] * 1e3, med["cachestat"] * 1e3, med["mincore"] * 1e3))
    for m, target in (("cachestat", 1.0), ("mincore", 2.0)):
        ratio = med[m] / med["vmtouch"]
        print("ratio {}/vmtouch = {:.2f} (target <= {:.1f}: {})".format(m, ratio, target, "met" if ratio <= target else "NOT met"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--files", type=int, default=20000)
    args = p.parse_args()
    if not shutil.which("vmtouch"):
        sys.exit("exporter_bench: vmtouch is not installed (apt-get install vmtouch)")
    work = tempfile.mkdtemp(prefix="edgescope-bench-")
    try:
        tree = os.path.join(work, "tree")
        make_tree(tree, args.files)
        bench_pagecache(tree)
        bench_exporter(tree, work, args.seconds)
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()

"""How many boards one Prometheus agent and one central VictoriaMetrics hold on this machine.

    PYTHONPATH=$PWD python3 bench/fleet_bench.py [--json out.json]

One `edgescope-fleet-sim` serves every simulated board (exporter + trainer,
~370 series each) on loopback. For each scrape interval (1 s, 5 s) the bench
walks up a ladder of fleet sizes; at each step it starts fresh: one site agent
(the shipped prometheus/agent.yml, scraping the boards through the stack's
file_sd jobs), VictoriaMetrics, and vmalert evaluating the project's rules at
the scrape interval. After a warm-up it measures over a window:

  ingest    samples of `up` the central store holds for the window / the
            number the scrapes should have produced (2 targets per board)
  lag       the agent's newest appended sample minus its newest sample sent
  rules     vmalert iterations missed, and its slowest group evaluation
  CPU, RSS  of the agent, VictoriaMetrics, vmalert, and the simulator apart

A step keeps up when no scrape failed (the agent side: a scrape must finish
within the interval) and the central side keeps up: ingest >= 0.97, the lag
stays under interval + 7 s (the 5 s batch deadline plus slack), and no rule
iteration was missed or took longer than the interval. The knee is the last size that keeps
up; the ladder stops at the first that does not. Then the same load (the 1 s
knee) runs once more against a central Prometheus (remote-write receiver,
same rules) in place of VictoriaMetrics + vmalert, for the comparison, judged
on the central side's criteria (scrape failures belong to the agent side).

The machine is shared (2 cores, other jobs running): the load average is
printed with every step, and the simulator's own CPU is part of the load.
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import requests
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fleet import harness  # noqa: E402

STACK_CONFIG = harness.REPO / "prometheus" / "prometheus.yml"
BATCH_DEADLINE_S = 5.0


def metric_values(url: str, name: str) -> List[float]:
    """Every value of metric `name` on a /metrics page (all label sets)."""
    text = requests.get(url + "/metrics", timeout=10).text
    out = []
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            out.append(float(line.rsplit(" ", 1)[1]))
    return out


def machine_busy() -> float:
    """CPU seconds spent busy by the whole machine so far (all cores)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def site_jobs(targets_file: Path) -> Dict[str, Any]:
    """The stack's exporter and trainer jobs (file_sd + port relabelling), reading `targets_file`."""
    config = yaml.safe_load(STACK_CONFIG.read_text())
    jobs = {}
    for job in config["scrape_configs"]:
        for sd in job.get("file_sd_configs", []):
            sd["files"] = [str(targets_file)]
            sd["refresh_interval"] = "2s"
        jobs[job["job_name"]] = job
    return jobs


def central_prometheus(workdir: Path, interval: str) -> harness.Service:
    """A central Prometheus receiving remote write and evaluating the project's rules."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"evaluation_interval": interval},
                                      "rule_files": [str(harness.RULES / "*.yml")]}))
    port = harness.free_port()
    return harness.Service("central-prometheus", [
        harness.binary("prometheus"), "--config.file={}".format(config),
        "--storage.tsdb.path={}".format(workdir / "data"), "--web.enable-remote-write-receiver",
        "--web.listen-address=127.0.0.1:{}".format(port), "--log.level=warn"], workdir, port, "/-/ready")


class Step:
    def __init__(self, sim: harness.Simulator, workdir: Path, devices: int, interval: float, central: str,
                 warmup: float, window: float) -> None:
        self.sim, self.workdir, self.devices, self.interval = sim, workdir, devices, interval
        self.central, self.warmup, self.window = central, warmup, window

    def run(self) -> Dict[str, Any]:
        targets = self.workdir / "targets.yml"
        self.workdir.mkdir(parents=True, exist_ok=True)
        tmp = targets.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(self.sim.targets[:self.devices]))
        tmp.replace(targets)
        iv = "{:g}s".format(self.interval)
        services = []  # type: List[harness.Service]
        try:
            if self.central == "victoriametrics":
                store = harness.victoria_metrics(self.workdir / "vm").start()
                rules = harness.vmalert(self.workdir / "vmalert", store.url, iv).start()
                services += [store, rules]
            else:
                store = central_prometheus(self.workdir / "prometheus", iv).start()
                rules = store
                services.append(store)
            write_url = store.url + "/api/v1/write"
            agent = harness.prometheus_agent(self.workdir / "agent",
                                             harness.agent_config(write_url, iv, site_jobs(targets))).start()
            services.append(agent)
            time.sleep(self.warmup)
            return self._measure(store, rules, agent, services)
        finally:
            for s in reversed(services):
                s.stop()

    def _missed(self, rules: harness.Service) -> float:
        name = ("vmalert_iteration_missed_total" if self.central == "victoriametrics"
                else "prometheus_rule_group_iterations_missed_total")
        return sum(metric_values(rules.url, name))

    def _slowest_rule_group(self, rules: harness.Service) -> float:
        if self.central == "victoriametrics":
            text = requests.get(rules.url + "/metrics", timeout=10).text
            values = [float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                      if ln.startswith("vmalert_iteration_duration_seconds{") and 'quantile="1"' in ln]
        else:
            values = metric_values(rules.url, "prometheus_rule_group_last_duration_seconds")
        return max(values or [float("nan")])

    def _measure(self, store, rules, agent, services) -> Dict[str, Any]:
        t0 = time.time()
        cpu0 = {s.name: s.cpu_seconds() for s in services}
        sim0, busy0, missed0 = self.sim.cpu_seconds(), machine_busy(), self._missed(rules)
        time.sleep(self.window)
        t1 = time.time()
        wall = t1 - t0
        cpu = {s.name: (s.cpu_seconds() - cpu0[s.name]) / wall for s in services}
        rss = {s.name: s.rss_bytes() for s in services}
        sim_cpu, busy = (self.sim.cpu_seconds() - sim0) / wall, (machine_busy() - busy0) / wall
        missed = self._missed(rules) - missed0
        slowest = self._slowest_rule_group(rules)
        appended = max(metric_values(agent.url, "prometheus_remote_storage_highest_timestamp_in_seconds") or [0.0])
        sent = max(metric_values(agent.url, "prometheus_remote_storage_queue_highest_sent_timestamp_seconds") or [0.0])
        lag = appended - sent
        time.sleep(BATCH_DEADLINE_S + 2)  # let the last batches land before counting
        rng = "{}s".format(int(wall))
        stored = harness.query(store.url, "sum(count_over_time(up[{}]))".format(rng), t1)
        ok = harness.query(store.url, "sum(sum_over_time(up[{}]))".format(rng), t1)
        stored_n = float(stored[0]["value"][1]) if stored else 0.0
        failed = stored_n - (float(ok[0]["value"][1]) if ok else 0.0)
        expected = 2 * self.devices * int(wall) / self.interval
        ingest = stored_n / expected
        scrapes_ok = failed == 0
        central_ok = (ingest >= 0.97 and lag <= self.interval + BATCH_DEADLINE_S + 2
                      and missed == 0 and slowest < self.interval)
        return {"central": self.central, "devices": self.devices, "interval_s": self.interval,
                "keeps_up": scrapes_ok and central_ok, "scrapes_ok": scrapes_ok, "central_ok": central_ok, "ingest_ratio": round(ingest, 4), "failed_scrapes": failed,
                "remote_write_lag_s": round(lag, 2), "rule_iterations_missed": missed,
                "slowest_rule_group_s": round(slowest, 4), "cpu_cores": {k: round(v, 3) for k, v in cpu.items()},
                "rss_mib": {k: round(v / 2 ** 20, 1) for k, v in rss.items()},
                "simulator_cpu_cores": round(sim_cpu, 3), "machine_busy_cores": round(busy, 2),
                "load_average": os.getloadavg()[0], "samples_per_second": round(2 * self.devices / self.interval
                                                                                 * self.series_per_target(store), 0)}

    def series_per_target(self, store: harness.Service) -> float:
        got = harness.query(store.url, "sum(scrape_samples_scraped) / count(scrape_samples_scraped)")
        return float(got[0]["value"][1]) if got else float("nan")


def per_100(step: Dict[str, Any]) -> Dict[str, float]:
    """CPU cores and MiB of the agent + central side per 100 boards."""
    k = 100.0 / step["devices"]
    return {"cpu_cores": round(sum(step["cpu_cores"].values()) * k, 3),
            "rss_mib": round(sum(step["rss_mib"].values()) * k, 1)}


def line(step: Dict[str, Any]) -> str:
    return ("{central:15s} {interval_s:>4g}s {devices:5d} boards  {ok:4s} ingest {ingest_ratio:.3f}  failed {failed_scrapes:g}"
            "  lag {remote_write_lag_s:5.2f}s  rules missed {rule_iterations_missed:g} slowest {slowest_rule_group_s:.3f}s"
            "  cpu {cpu}  rss MiB {rss}  sim {simulator_cpu_cores:.2f}  machine {machine_busy_cores:.2f}/{cores}"
            "  load {load_average:.1f}").format(ok="ok" if step["keeps_up"] else "FAIL", cpu=step["cpu_cores"],
                                                rss=step["rss_mib"], cores=os.cpu_count(), **step)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ladder-1s", default="50,100,150,200", help="fleet sizes at 1 s (default %(default)s)")
    p.add_argument("--ladder-5s", default="100,200,300,400", help="fleet sizes at 5 s (default %(default)s)")
    p.add_argument("--json", metavar="PATH", help="also write every step as JSON here")
    args = p.parse_args(argv)
    ladders = {1.0: [int(x) for x in args.ladder_1s.split(",")], 5.0: [int(x) for x in args.ladder_5s.split(",")]}
    most = max(max(v) for v in ladders.values())
    started = time.time()
    steps = []  # type: List[Dict[str, Any]]
    with tempfile.TemporaryDirectory(prefix="fleet-bench-") as tmp:
        root = Path(tmp)
        sim = harness.Simulator(root / "sim", most)
        try:
            print("fleet bench: {} simulated boards served; {} cores, load {:.1f}".format(
                most, os.cpu_count(), os.getloadavg()[0]), flush=True)
            knee = {}  # type: Dict[float, Dict[str, Any]]
            for interval, ladder in ladders.items():
                warmup, window = (8.0, 12.0) if interval < 5 else (12.0, 25.0)
                for n in ladder:
                    step = Step(sim, root / "step-{}".format(len(steps)), n, interval, "victoriametrics",
                                warmup, window).run()
                    steps.append(step)
                    print(line(step), flush=True)
                    if not step["keeps_up"]:
                        break
                    knee[interval] = step
            load = knee.get(1.0) or steps[0]
            for central in ("prometheus", "victoriametrics"):
                step = Step(sim, root / "step-{}".format(len(steps)), load["devices"], 1.0, central, 8.0, 12.0).run()
                step["comparison"] = True
                steps.append(step)
                print(line(step), flush=True)
        finally:
            sim.stop()
    print("\nknee (largest fleet that keeps up; the ladder stops at the first that does not):")
    for interval, ladder in ladders.items():
        ok = knee.get(interval)
        tried = [s["devices"] for s in steps if s["interval_s"] == interval and not s.get("comparison")]
        top = ok["devices"] if ok else 0
        note = "first failure at {}".format(tried[-1]) if tried and tried[-1] != top else "all sizes up to {} kept up".format(top)
        print("  {:g} s: {} boards ({}); per 100 boards: {}".format(interval, top, note, per_100(ok) if ok else "-"))
    comp = [s for s in steps if s.get("comparison")]
    print("\ncentral store at {} boards, 1 s (agent excluded):".format(load["devices"]))
    for s in comp:
        central_cpu = sum(v for k, v in s["cpu_cores"].items() if k != "agent")
        central_rss = sum(v for k, v in s["rss_mib"].items() if k != "agent")
        print("  {:16s} cpu {:.3f} cores  rss {:.0f} MiB  central side keeps up: {}  (agent side: {} failed "
              "scrapes)".format(s["central"], central_cpu, central_rss, s["central_ok"], s["failed_scrapes"]))
    if any(s["failed_scrapes"] for s in comp):
        print("  NOT COMPARABLE: the agent side failed scrapes (the machine is too busy), so the stores did not "
              "receive the same load; rerun when the machine is quieter")
    elif len(comp) == 2:
        p_, v_ = comp
        ratio_cpu = sum(v for k, v in v_["cpu_cores"].items() if k != "agent") / max(1e-9, sum(
            v for k, v in p_["cpu_cores"].items() if k != "agent"))
        ratio_rss = sum(v for k, v in v_["rss_mib"].items() if k != "agent") / max(1e-9, sum(
            v for k, v in p_["rss_mib"].items() if k != "agent"))
        print("  VictoriaMetrics+vmalert / Prometheus: cpu {:.2f}x, rss {:.2f}x".format(ratio_cpu, ratio_rss))
    print("total {:.0f} s".format(time.time() - started))
    if args.json:
        Path(args.json).write_text(json.dumps(steps, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

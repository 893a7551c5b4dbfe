"""A real Prometheus (Debian's 2.42, the project's own config through the
stack's harness) holding the synthetic bench of scenario.py, backfilled with
promtool into its data dir before it starts; stopped at the end of the session."""
import shutil
import subprocess
import time

import pytest

from tests.report.scenario import Bench
from tests.stack.harness import Prometheus

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


class Server:
    def __init__(self, url: str, bench: Bench) -> None:
        self.url = url
        self.bench = bench


@pytest.fixture(scope="session")
def bench_prometheus(tmp_path_factory):
    root = tmp_path_factory.mktemp("prometheus")
    bench = Bench(base=float(int(time.time()) - 5 * 3600))
    source = root / "bench.om"
    source.write_text(bench.openmetrics())
    subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(source), str(root / "data")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    with Prometheus(root, scrape_interval="5s") as prom:  # no targets: it serves the backfilled blocks
        yield Server(prom.url, bench)

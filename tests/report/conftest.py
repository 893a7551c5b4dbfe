"""A real Prometheus (Debian's 2.42, the project's own config through the
stack's harness) holding the synthetic bench of scenario.py, backfilled with
promtool into its data dir before it starts; stopped at the end of the session."""
import contextlib
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


@contextlib.contextmanager
def backfilled(root, openmetrics: str):
    """A real Prometheus serving ``openmetrics`` (backfilled with promtool); yields its URL."""
    source = root / "bench.om"
    source.write_text(openmetrics)
    subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(source), str(root / "data")],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    with Prometheus(root, scrape_interval="5s") as prom:  # no targets: it serves the backfilled blocks
        yield prom.url


@pytest.fixture(scope="session")
def bench_prometheus(tmp_path_factory):
    bench = Bench(base=float(int(time.time()) - 5 * 3600))
    with backfilled(tmp_path_factory.mktemp("prometheus"), bench.openmetrics()) as url:
        yield Server(url, bench)

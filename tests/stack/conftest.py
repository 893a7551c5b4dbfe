"""Fixtures for the monitoring stack's tests (see harness.py)."""
from pathlib import Path
from typing import Any, Callable, Iterator, List

import pytest

from tests.stack.harness import Prometheus


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    """Starts real Prometheus servers with the project's config; stops them all afterwards.

        prom = prometheus_server()              # 1 s scrape/eval, no Alertmanager
        prom.set_targets([Target("nano-01", exporter_port=port)])
    """
    servers = []  # type: List[Prometheus]

    def start(**kwargs: Any) -> Prometheus:
        server = Prometheus(tmp_path / ("prometheus-%d" % len(servers)), **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()

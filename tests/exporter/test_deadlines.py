"""Every network call has a deadline for the whole request (exporter.fetch, used by the trainer reading an
exporter and the report reading Prometheus): real hostile servers on 127.0.0.1 that trickle their answer one
byte at a time (in the headers, in the body) or send without end. With requests' per-read timeout each of
them would hold the caller for minutes to hours; the bounds asserted here are liveness bounds, ten times the
deadline or more, for a loaded machine."""
import io
import socket
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from typing import Iterator

import pytest
import requests

from exporter import fetch
from report.cli import main as report_main
from trainer.energy import EnergyUnavailable, ExporterEnergy


def _endless_header() -> Iterator[bytes]:
    yield b"HTTP/1.1 200 OK\r\nX-Slow: "
    while True:
        yield b"a"


def _endless_body() -> Iterator[bytes]:
    yield b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000000000\r\n\r\n"
    while True:
        yield b"# a\n"


class Hostile:
    """A server on 127.0.0.1 answering every connection with ``answer()``'s pieces, ``pause`` s apart (a piece
    None: wait for the client's next request)."""

    def __init__(self, answer, pause: float) -> None:
        self._answer, self._pause = answer, pause
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = "http://127.0.0.1:{}".format(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            for piece in self._answer():
                if self._stop.wait(self._pause):
                    return
                try:
                    if piece is None:
                        conn.recv(65536)
                        continue
                    conn.sendall(piece)
                except OSError:
                    return  # the client cut it

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


@pytest.fixture
def hostile():
    servers = []

    def start(answer, pause=0.05):
        servers.append(Hostile(answer, pause))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.mark.parametrize("answer", [_endless_header, _endless_body], ids=["headers", "body"])
def test_a_trickling_answer_is_cut_at_the_whole_request_deadline(hostile, answer):
    server = hostile(answer)
    started = time.monotonic()
    with pytest.raises(requests.Timeout, match="no whole answer within 0.5 s"):
        fetch.get(fetch.session(), server.url + "/metrics", 0.5, 1 << 20)
    assert time.monotonic() - started < 10  # liveness: the trickle goes on for hours


def test_an_endless_answer_stops_at_the_size_bound(hostile):
    server = hostile(_endless_body, pause=0)
    with pytest.raises(fetch.AnswerTooLarge, match="more than 1 MiB"):
        fetch.get(fetch.session(), server.url, 30, 1 << 20)


def test_a_kept_alive_connection_is_watched_on_its_next_request(hostile):
    """The second request of a session reuses the first one's connection (no new connect): still cut."""
    def first_then_trickle() -> Iterator[bytes]:
        yield b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        yield None  # the second request, on the same connection
        yield from _endless_body()  # a piece every 50 ms: a per-read timeout never fires

    server = hostile(first_then_trickle, pause=0.05)
    client = fetch.session()
    assert fetch.get(client, server.url, 5, 1 << 20).text == "ok"
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        fetch.get(client, server.url, 0.5, 1 << 20)
    assert time.monotonic() - started < 10
    assert server.accepted == 1


def test_the_trainer_reading_a_trickling_exporter_gives_up_at_its_timeout(hostile):
    meter = ExporterEnergy(hostile(_endless_body).url, timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(EnergyUnavailable, match="cannot read .*: Timeout"):
        meter.read()
    assert time.monotonic() - started < 10
    meter.close()


def test_the_report_against_a_trickling_prometheus_ends_at_its_timeout_in_one_line(hostile):
    server = hostile(_endless_header)
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    with redirect_stdout(out), redirect_stderr(err):
        assert report_main(["--prometheus", server.url, "--timeout", "1", "--format", "json"]) == 1
    assert time.monotonic() - started < 20
    assert err.getvalue().strip().splitlines() == [
        "edgescope-report: error: Prometheus at {} did not answer within 1 s; check --prometheus or raise "
        "--timeout".format(server.url)]

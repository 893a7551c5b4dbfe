"""Fuzz of the one HTTP server both endpoints use (the exporter's and the trainer's): seeded random methods,
paths, headers, bodies, truncated requests and slow clients from several threads at once. The server must never
die or print a traceback, every answer must be a valid status line, and a concurrent scrape must keep answering
200 within 2 s (a liveness bound: a blocked server would take the 10 s client timeout)."""
import base64
import random
import re
import socket
import threading
import time
from typing import Callable, List

import bcrypt
import pytest
import requests

from exporter import server as server_module
from exporter.metrics import Sample
from exporter.server import load_web_config, serve
from trainer.metrics import TrainMetrics, load_web, start_server

STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (200|400|401|404|405|414|431|505) ")
METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"TRACE", b"CONNECT", b"PATCH", b"PRI", b"get",
           b"BREW", b"G\xc3\xa9T", b"", b"GET GET", b"\x00", b"-"]
PATHS = [b"/metrics", b"/", b"/metrics?x=1", b"/metrics/", b"//metrics", b"/../../etc/passwd", b"*", b"",
         b"/%00", b"/metrics%20", b"http://evil/metrics", b"/\xff\xfe", b"/" + b"a" * 70000]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1.1.1", b"HTTPS/1.1", b"", b"HTTP/x"]
USERS = ["prometheus", "nobody", "", "x" * 100, "\u00e9"]
CASES_PER_THREAD = 40
THREADS = 6


def _random_bytes(rng: random.Random, most: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(rng.randrange(most)))


def _header(rng: random.Random) -> bytes:
    kind = rng.randrange(7)
    if kind == 0:
        credentials = "{}:{}".format(rng.choice(USERS), rng.choice(["s3cret", "wrong", "p" * 80, ""]))
        return b"Authorization: Basic " + base64.b64encode(credentials.encode())
    if kind == 1:
        return b"Authorization: " + _random_bytes(rng, 80)
    if kind == 2:
        return b"Content-Length: " + rng.choice([b"-1", b"99999999999999999999", b"abc", b"5", b""])
    if kind == 3:
        return b"X-" + b"h" * rng.randrange(1, 70000) + b": v"
    if kind == 4:
        return b"Transfer-Encoding: chunked"
    if kind == 5:
        return b"Connection: " + rng.choice([b"keep-alive", b"close", b"upgrade"])
    return _random_bytes(rng, 200).replace(b"\r\n", b"")


def _request(rng: random.Random) -> bytes:
    line = b" ".join(part for part in (rng.choice(METHODS), rng.choice(PATHS), rng.choice(VERSIONS)) if rng.random() < 0.95)
    headers = [_header(rng) for _ in range(rng.choice([0, 1, 3, 120]))]
    request = b"\r\n".join([line] + headers) + b"\r\n\r\n" + _random_bytes(rng, 300)
    if rng.random() < 0.2:
        request = request[:rng.randrange(len(request) + 1)]  # truncated
    return request


def _exchange(port: int, request: bytes, rng: random.Random) -> bytes:
    """Sends ``request`` (at once or in slow pieces), then reads what comes back until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            if rng.random() < 0.1:  # a slow client
                for start in range(0, min(len(request), 60), 7):
                    sock.sendall(request[start:start + 7])
                    time.sleep(0.05)
                sock.sendall(request[60:])
            else:
                sock.sendall(request)
            if rng.random() < 0.5:
                sock.shutdown(socket.SHUT_WR)
            answer = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return answer
                answer += chunk
        except OSError:  # the server may close on garbage before reading all of it
            return b""


def _web_config(tmp_path) -> str:
    path = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()
    path.write_text("basic_auth_users:\n  prometheus: '{}'\n".format(hashed))
    return str(path)


def _exporter(tmp_path, auth: bool) -> server_module.MetricsServer:
    web = load_web_config(_web_config(tmp_path)) if auth else None
    return serve("127.0.0.1:0", lambda: [Sample("edgescope_disk_read_iops", {"disk": "sda"}, 1.0)], web)


def _trainer(tmp_path, auth: bool) -> server_module.MetricsServer:
    metrics = TrainMetrics("fuzz-\u00e9")
    metrics.running.set(1)
    server = start_server(metrics.registry, 0, "127.0.0.1", load_web(_web_config(tmp_path) if auth else None))
    assert server is not None
    return server


@pytest.mark.parametrize("auth", [False, True], ids=["open", "basic-auth"])
@pytest.mark.parametrize("make", [_exporter, _trainer], ids=["exporter", "trainer"])
def test_random_requests_never_kill_or_block_the_server(tmp_path, capfd, monkeypatch, make: Callable, auth: bool):
    monkeypatch.setattr(server_module, "HEAD_DEADLINE_S", 0.5)  # truncated requests end quickly
    server = make(tmp_path, auth)
    url = "http://127.0.0.1:{}/metrics".format(server.port)
    credentials = ("prometheus", "s3cret") if auth else None
    bad = []  # type: List[bytes]
    seen = set()  # status codes answered (0: closed without an answer)
    scrapes = []  # type: List[tuple]
    done = threading.Event()

    def fuzz(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(CASES_PER_THREAD):
            request = _request(rng)
            answer = _exchange(server.port, request, rng)
            status = STATUS_LINE.match(answer)
            seen.add(int(status.group(1)) if status else 0)
            if answer and not status:
                bad.append(request[:200] + b" -> " + answer[:100])

    def scrape() -> None:
        while not done.is_set():
            started = time.monotonic()
            status = requests.get(url, auth=credentials, timeout=10).status_code
            scrapes.append((status, time.monotonic() - started))
            time.sleep(0.1)

    silent = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(5)]  # hold, never send
    scraper = threading.Thread(target=scrape)
    scraper.start()
    fuzzers = [threading.Thread(target=fuzz, args=(seed,)) for seed in range(THREADS)]
    try:
        for thread in fuzzers:
            thread.start()
        for thread in fuzzers:
            thread.join(240)
    finally:
        done.set()
        scraper.join(30)
        for sock in silent:
            sock.close()
    try:
        assert not bad, bad[:3]
        assert ({400, 405, 401} if auth else {400, 404, 405, 200}) <= seen, seen  # it reaches every branch
        assert scrapes and all(status == 200 for status, _ in scrapes), scrapes
        assert max(took for _, took in scrapes) < 2.0, scrapes
        assert requests.get(url, auth=credentials, timeout=10).status_code == 200  # still alive
        assert "Traceback" not in capfd.readouterr().err
    finally:
        server.close()

"""What one connection, one password or a crowd of scrapers may cost the server shared by exporter and trainer:
bcrypt costs are capped at load, concurrent password checks are bounded per client and in all, a burst of 200
scrapes is answered, idle and trickling clients hold no thread."""
import base64
import re
import select
import socket
import threading
import time

import bcrypt
import pytest
import requests
import yaml
from hypothesis import given, settings, strategies as st
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import GaugeMetricFamily

from exporter import server as server_module
from exporter.config import ConfigError
from exporter.server import BCRYPT_MAX_COST, MetricsServer, load_web_config, serve_registry

SALT_AND_DIGEST = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()[7:]  # valid to the format


@settings(max_examples=60, deadline=None)
@given(cost=st.integers(4, 31), user=st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True))
def test_a_bcrypt_cost_above_the_cap_is_refused_at_load_in_one_line(tmp_path_factory, cost, user):
    """Any cost the hash format allows: up to the cap it loads (quickly), above it one line names file, key, fix."""
    web = tmp_path_factory.mktemp("web") / "web.yml"
    web.write_text("basic_auth_users:\n  {}: '$2y${:02d}${}'\n".format(user, cost, SALT_AND_DIGEST))
    if not isinstance(yaml.safe_load(user), str):  # on, off, yes, no, true, false, null: not a name to YAML
        with pytest.raises(ConfigError, match="YAML reads this user name as .*; quote it"):
            load_web_config(str(web))
        return
    if cost <= BCRYPT_MAX_COST:
        assert load_web_config(str(web)).users == {user: "$2y${:02d}${}".format(cost, SALT_AND_DIGEST).encode()}
        return
    with pytest.raises(ConfigError) as error:
        load_web_config(str(web))
    message = str(error.value)
    assert message.startswith("{}: key 'basic_auth_users.{}': bcrypt cost {} is above {}".format(
        web, user, cost, BCRYPT_MAX_COST)) and "htpasswd -nBC 10 " + user in message and "\n" not in message


def test_a_hash_followed_by_a_newline_is_refused(tmp_path):
    """The hash is matched to its end (\\Z): '$' let a trailing newline through to bcrypt."""
    web = tmp_path / "web.yml"
    web.write_text('basic_auth_users:\n  alice: "$2y$10${}\\n"\n'.format(SALT_AND_DIGEST))
    with pytest.raises(ConfigError, match="must be a bcrypt hash of 60 characters"):
        load_web_config(str(web))


def _server(web=None):
    registry = CollectorRegistry()
    Gauge("up_gauge", "a value to serve", registry=registry).set(1)
    return serve_registry(("127.0.0.1", 0), registry, web)


def _status_from(port: int, source: str, user: str, password: str) -> int:
    """GET /metrics with basic auth from the loopback address ``source`` (127.0.0.0/8 is all loopback)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0)) as sock:
        credentials = base64.b64encode("{}:{}".format(user, password).encode()).decode()
        sock.sendall("GET /metrics HTTP/1.0\r\nAuthorization: Basic {}\r\n\r\n".format(credentials).encode())
        return int(sock.makefile("rb").readline().split()[1])


def test_a_wrong_password_flood_holds_one_check_per_client_and_never_locks_the_others_out(tmp_path, monkeypatch):
    """Wrong passwords from one client (held on an event: a stand-in for a cost that takes seconds) hold one
    check; its further tries get 429 at once, while the right user from another address is checked and let in
    (with one bound shared by all, the flood answered it 429 on every try). The global bound still holds: two
    flooding clients fill it and a third gets 429, with no third check started."""
    monkeypatch.setattr(server_module, "BCRYPT_CONCURRENT", 2)
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  prometheus: '{}'\n".format(
        bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()))
    server = _server(load_web_config(str(web)))
    release, running = threading.Event(), []

    class SlowBcrypt:
        """bcrypt whose checks of wrong passwords wait for ``release``."""
        @staticmethod
        def checkpw(secret, hashed):
            if secret != b"s3cret":
                running.append(secret)
                release.wait(30)
            return bcrypt.checkpw(secret, hashed)

    def held_until(count):
        deadline = time.monotonic() + 10
        while len(running) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return len(running)

    server.auth._bcrypt = SlowBcrypt
    attacks = []
    try:
        for source, user in (("127.0.0.2", "prometheus"), ("127.0.0.2", "nobody")):
            attacks.append(threading.Thread(target=_status_from, args=(server.port, source, user, "wrong")))
            attacks[-1].start()
        assert held_until(1) == 1
        for user in ("prometheus", "nobody", "mallory"):
            started = time.monotonic()
            assert _status_from(server.port, "127.0.0.2", user, "guess") == 429, user
            assert time.monotonic() - started < 5  # answered at once, not after the held check
        assert _status_from(server.port, "127.0.0.1", "prometheus", "s3cret") == 200  # not locked out
        attacks.append(threading.Thread(target=_status_from, args=(server.port, "127.0.0.3", "nobody", "wrong")))
        attacks[-1].start()
        assert held_until(2) == 2
        assert _status_from(server.port, "127.0.0.4", "mallory", "guess") == 429
        assert len(running) == 2  # no third check started
        release.set()
        for thread in attacks:
            thread.join(30)
        assert _status_from(server.port, "127.0.0.2", "prometheus", "wrong again") == 401
    finally:
        release.set()
        server.close()


def test_200_simultaneous_scrapes_are_all_answered():
    """The listen backlog holds a burst: 200 connections opened while the server is not yet accepting all complete
    their handshake at once (with socketserver's backlog of 5, all but 6 SYNs were dropped and retried after 1, 3,
    7 s..., past Prometheus' 10 s timeout); then every one of the 200 scrapes is answered."""
    registry = CollectorRegistry()
    Gauge("up_gauge", "a value to serve", registry=registry).set(1)
    server = MetricsServer(("127.0.0.1", 0), registry, None)  # listening, not accepting yet
    clients = [socket.socket() for _ in range(200)]
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    try:
        for c in clients:
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", server.port))
        poller = select.poll()
        for c in clients:
            poller.register(c, select.POLLOUT)
        connected, deadline = set(), time.monotonic() + 0.9  # under the first SYN retry (1 s)
        while len(connected) < len(clients) and time.monotonic() < deadline:
            connected.update(fd for fd, _ in poller.poll(100))
        assert len(connected) == 200, "{} of 200 connections completed".format(len(connected))
        serving.start()
        started = time.monotonic()
        for c in clients:
            c.setblocking(True)
            c.settimeout(20)
            c.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        answers = [c.makefile("rb").readline() for c in clients]
        assert answers == [b"HTTP/1.0 200 OK\r\n"] * 200
        assert time.monotonic() - started < 10  # all 200, on a loaded 2-core machine: a generous bound
    finally:
        for c in clients:
            c.close()
        if serving.is_alive():
            server.shutdown()
        server.server_close()


@pytest.mark.parametrize("user", ["on", "off", "yes", "no", "true", "null"])
def test_a_user_name_yaml_reads_as_a_boolean_is_one_line_not_a_renamed_user(tmp_path, user):
    """Unquoted, `on: '$2y$...'` is the user True to YAML 1.1: refused with the fix, never renamed."""
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  {}: '$2y$10${}'\n".format(user, SALT_AND_DIGEST))
    with pytest.raises(ConfigError) as error:
        load_web_config(str(web))
    assert str(error.value).startswith("{}: key 'basic_auth_users.".format(web)) and "quote it" in str(error.value)
    web.write_text("basic_auth_users:\n  '{}': '$2y$10${}'\n".format(user, SALT_AND_DIGEST))
    assert list(load_web_config(str(web)).users) == [user]


def test_idle_half_sent_requests_hold_no_thread_and_the_oldest_give_way_to_a_scrape(monkeypatch):
    """300 connections that send half a request and wait: the server's threads do not grow (a thread per
    connection grew the exporter to 2,041 threads under 1,200), past MAX_CONNECTIONS the longest-waiting
    unfinished heads are closed, and a scrape is answered while they wait."""
    monkeypatch.setattr(server_module, "MAX_CONNECTIONS", 100)
    server = _server()
    threads_before = threading.active_count()
    idle = []
    try:
        for _ in range(300):
            idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=10))
            idle[-1].sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        answer = requests.get("http://127.0.0.1:{}/metrics".format(server.port), timeout=10)
        assert answer.status_code == 200 and "up_gauge 1.0" in answer.text
        assert threading.active_count() == threads_before
        closed = sum(1 for sock in idle[:150] if sock.recv(1) == b"")  # the oldest: closed without an answer
        assert closed == 150
    finally:
        for sock in idle:
            sock.close()
        server.close()


def test_scrapes_waiting_together_share_one_render_made_after_they_arrived():
    """Scrapes arriving while a render is under way wait for the next one, which all of them share: 20 at once
    cost 2 renders, not 20, and no answer was rendered before its request came."""
    from exporter.server import _Exposition
    gate, begun = threading.Event(), []

    class Counted:
        def collect(self):
            begun.append(time.monotonic())
            if len(begun) == 1:
                gate.wait(30)
            yield GaugeMetricFamily("render_number", "which render this is", value=len(begun))

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Counted())
    exposition, answers = _Exposition(registry), []

    def scrape():
        arrived = time.monotonic()
        answers.append((arrived, exposition.render()))

    first = threading.Thread(target=scrape)
    first.start()
    while not begun:
        time.sleep(0.01)
    crowd = [threading.Thread(target=scrape) for _ in range(19)]
    for thread in crowd:
        thread.start()
    time.sleep(0.5)  # all 19 are waiting behind the held render (a margin, not a timing assert)
    gate.set()
    for thread in [first] + crowd:
        thread.join(30)
    assert len(begun) == 2, begun
    for arrived, body in answers:
        number = int(float(re.search(r"^render_number (\S+)$", body.decode(), re.M).group(1)))
        assert begun[number - 1] >= arrived or number == 1

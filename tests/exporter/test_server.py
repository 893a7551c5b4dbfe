"""The HTTP side: real HTTPS requests with TLS + bcrypt basic auth; failing and hung sources."""
import datetime
import ipaddress
import os
import socket
import subprocess
import sys
import threading
import time

import bcrypt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exporter import server as server_module
from exporter.config import ConfigError
from exporter.metrics import Sample
from exporter.sampler import Sampler
from exporter.server import load_web_config, serve
from exporter.sources.base import Source, SourceDown
from tests.exporter.conftest import free_port, parse_metrics
from tests.processes import REPO, child_env


def _cert(tmp_path, name, issuer_key=None, issuer_name=None, ca=False):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name or subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    crt, pem = tmp_path / (name + ".crt"), tmp_path / (name + ".key")
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return str(crt), str(pem), key, subject


class Const(Source):
    name = "diskstats"

    def sample(self):
        return [Sample("edgescope_disk_read_iops", {"disk": "sda"}, 12.5)]


class Raises(Source):
    name = "thermal"

    def sample(self):
        raise RuntimeError("sensor bus exploded\nsecond line")


class Hangs(Source):
    name = "jtop"

    def __init__(self):
        self.release = threading.Event()

    def sample(self):
        self.release.wait(30)
        raise SourceDown("released")


@pytest.fixture
def server_with(request):
    servers = []

    def start(sources, web=None, timeout=0.5):
        sampler = Sampler(sources, interval=0.1, timeout=timeout)
        sampler.start()
        port = free_port()
        srv = serve("127.0.0.1:{}".format(port), sampler.snapshot, web)
        servers.append((srv, sampler))
        return port

    yield start
    for srv, sampler in servers:
        srv.shutdown()
        srv.server_close()
        for s in sampler.sources:
            if isinstance(s, Hangs):
                s.release.set()
        sampler.stop()


@pytest.fixture
def tls_files(tmp_path):
    ca_crt, _, ca_key, ca_name = _cert(tmp_path, "ca", ca=True)
    srv_crt, srv_key, _, _ = _cert(tmp_path, "server", ca_key, ca_name)
    cli_crt, cli_key, _, _ = _cert(tmp_path, "client", ca_key, ca_name)
    return {"ca": ca_crt, "crt": srv_crt, "key": srv_key, "client": (cli_crt, cli_key)}


def _web_config(tmp_path, text):
    p = tmp_path / "web.yml"
    p.write_text(text)
    return load_web_config(str(p))


def test_tls_and_bcrypt_basic_auth(tmp_path, tls_files, server_with):
    hashed = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$")  # htpasswd style
    web = _web_config(tmp_path, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                                "basic_auth_users:\n  prometheus: '{}'\n".format(hashed))
    port = server_with([Const()], web)
    url = "https://127.0.0.1:{}/metrics".format(port)
    time.sleep(0.3)
    ok = requests.get(url, auth=("prometheus", "s3cret"), verify=tls_files["ca"], timeout=5)
    assert ok.status_code == 200
    assert parse_metrics(ok.text)['edgescope_disk_read_iops{disk="sda"}'] == 12.5
    again = requests.get(url, auth=("prometheus", "s3cret"), verify=tls_files["ca"], timeout=5)
    assert again.status_code == 200  # served from the verified-password cache
    assert requests.get(url, auth=("prometheus", "wrong"), verify=tls_files["ca"], timeout=5).status_code == 401
    assert requests.get(url, auth=("nobody", "s3cret"), verify=tls_files["ca"], timeout=5).status_code == 401
    no_auth = requests.get(url, verify=tls_files["ca"], timeout=5)
    assert no_auth.status_code == 401 and no_auth.headers["WWW-Authenticate"].startswith("Basic")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get("http://127.0.0.1:{}/metrics".format(port), timeout=5)  # plain HTTP is not served
    # read-only: no control actions over HTTP
    assert requests.post(url, auth=("prometheus", "s3cret"), verify=tls_files["ca"], timeout=5).status_code == 405


def test_client_certificate_required(tmp_path, tls_files, server_with):
    web = _web_config(tmp_path, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
                                "  client_ca_file: ca.crt\n  client_auth_type: RequireAndVerifyClientCert\n")
    port = server_with([Const()], web)
    url = "https://127.0.0.1:{}/metrics".format(port)
    assert requests.get(url, verify=tls_files["ca"], cert=tls_files["client"], timeout=5).status_code == 200
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(url, verify=tls_files["ca"], timeout=5)


def test_raising_and_hung_sources_do_not_break_a_scrape(server_with):
    hung = Hangs()
    port = server_with([Const(), Raises(), hung], timeout=0.5)
    time.sleep(1.0)  # longer than the timeout: the hung sample is now overdue
    started = time.monotonic()
    resp = requests.get("http://127.0.0.1:{}/metrics".format(port), timeout=5)
    took = time.monotonic() - started
    assert resp.status_code == 200
    m = parse_metrics(resp.text)
    assert m['edgescope_source_up{source="diskstats"}'] == 1
    assert m['edgescope_source_up{source="thermal"}'] == 0
    assert m['edgescope_source_down_info{reason="RuntimeError: sensor bus exploded",source="thermal"}'] == 1
    assert m['edgescope_source_up{source="jtop"}'] == 0
    hung_keys = [k for k in m if k.startswith("edgescope_source_down_info") and 'source="jtop"' in k]
    assert hung_keys == ['edgescope_source_down_info{reason="sample hung: running longer than the 0.5s timeout",source="jtop"}']
    assert m['edgescope_disk_read_iops{disk="sda"}'] == 12.5
    assert took < 2.0, "the scrape waited on the hung source"  # liveness, not a speed target: it would wait 30 s


def test_unknown_path_is_404(server_with):
    port = server_with([Const()])
    assert requests.get("http://127.0.0.1:{}/debug".format(port), timeout=5).status_code == 404


def _hash(password: bytes, rounds: int = 4) -> str:
    return bcrypt.hashpw(password, bcrypt.gensalt(rounds=rounds)).decode().replace("$2b$", "$2y$")


def test_an_over_long_password_is_401_and_the_server_lives_on(tmp_path, server_with):
    web = _web_config(tmp_path, "basic_auth_users:\n  prometheus: '{}'\n".format(_hash(b"s3cret")))
    url = "http://127.0.0.1:{}/metrics".format(server_with([Const()], web))
    for user in ("prometheus", "nobody"):
        assert requests.get(url, auth=(user, "x" * 73), timeout=5).status_code == 401  # bcrypt 5 would raise
    assert requests.get(url, auth=("prometheus", "s3cret"), timeout=5).status_code == 200
    for header in ("Basic \u00e9\u00e9", "Basic !!!", "Basic " + "//79"):  # not ASCII, not base64, not UTF-8
        assert requests.get(url, headers={"Authorization": header.encode("utf-8")}, timeout=5).status_code == 401


def test_unknown_users_cost_as_much_as_known_ones(tmp_path, server_with):
    """No user enumeration by timing: a wrong password for a known user and any password for an unknown one
    both pay one bcrypt of the configured cost (a security property with a loose bound, not a speed target)."""
    web = _web_config(tmp_path, "basic_auth_users:\n  prometheus: '{}'\n".format(_hash(b"s3cret", rounds=9)))
    url = "http://127.0.0.1:{}/metrics".format(server_with([Const()], web))
    took = {"prometheus": [], "nobody": []}
    with requests.Session() as session:
        for i in range(16):
            for user in took:  # interleaved, so that load from other jobs hits both alike
                started = time.perf_counter()
                assert session.get(url, auth=(user, "wrong{}".format(i)), timeout=10).status_code == 401
                took[user].append(time.perf_counter() - started)
    ratio = sorted(took["nobody"])[8] / sorted(took["prometheus"])[8]
    assert 0.5 < ratio < 2.0, took


@pytest.mark.parametrize("text, expected", [
    ("basic_auth_users:\n  prometheus: $2y$10$REPLACE.WITH.A.REAL.BCRYPT.HASH.............................\n",
     "key 'basic_auth_users.prometheus': must be a bcrypt hash"),
    ("basic_auth_users:\n  prometheus: '$2y$10$short'\n", "key 'basic_auth_users.prometheus': must be a bcrypt hash"),
    ("basic_auth_users:\n  - prometheus\n", "key 'basic_auth_users': must be a mapping"),
    ("tls_server_config:\n  - cert_file: server.crt\n", "key 'tls_server_config': must be a mapping"),
    ("tls_server_config: []\n", "key 'tls_server_config': must be a mapping"),
    ("tls_server_config:\n  cert_file: [server.crt]\n  key_file: server.key\n",
     "key 'tls_server_config.cert_file': must be a string"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: [TLS12]\n",
     "key 'tls_server_config.min_version': must be a string"),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: server.key\n",
     "key 'tls_server_config.client_ca_file': "),
    ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_ca_file: web.yml\n",
     "key 'tls_server_config.client_ca_file': "),
])
def test_bad_web_config_is_one_line_naming_file_and_key(tmp_path, tls_files, text, expected):
    with pytest.raises(ConfigError) as error:
        _web_config(tmp_path, text)
    message = str(error.value)
    assert message.startswith(str(tmp_path / "web.yml")) and expected in message and "\n" not in message, message


def test_the_examples_placeholder_hash_is_refused_at_load():
    example = os.path.join(REPO, "deploy", "web.yml.example")
    with pytest.raises(ConfigError, match="basic_auth_users.prometheus': must be a bcrypt hash.*htpasswd"):
        load_web_config(example)


def test_only_get_and_head_of_metrics_and_no_python_version(server_with):
    port = server_with([Const()])
    url = "http://127.0.0.1:{}".format(port)
    ok = requests.get(url + "/metrics", timeout=5)
    assert ok.status_code == 200 and ok.headers["Server"] == "edgescope" and "Python" not in str(ok.headers)
    head = requests.head(url + "/metrics", timeout=5)
    assert head.status_code == 200 and head.content == b""
    for method in ("OPTIONS", "POST", "PUT", "DELETE", "PATCH", "TRACE", "BREW"):
        answer = requests.request(method, url + "/metrics", data=b"x" * 100, timeout=5)
        assert answer.status_code == 405 and answer.headers["Allow"] == "GET, HEAD", method
    assert requests.get(url + "/metrics/../x", timeout=5).status_code == 404
    assert requests.get(url + "/", timeout=5).status_code == 200  # the index page links /metrics


def test_a_silent_client_loses_its_connection_and_scrapes_go_on(server_with, monkeypatch):
    monkeypatch.setattr(server_module, "HEAD_DEADLINE_S", 0.5)
    port = server_with([Const()])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as silent:
        silent.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # ... and never ends the headers
        assert requests.get("http://127.0.0.1:{}/metrics".format(port), timeout=5).status_code == 200
        started = time.monotonic()
        assert silent.recv(1024) == b""  # closed by the server
        assert time.monotonic() - started < 25  # the head deadline, not the 30 s of this socket


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False  # open, nothing to read
    except OSError:
        return True  # reset


def test_a_trickling_client_is_cut_at_the_head_deadline(server_with, monkeypatch):
    monkeypatch.setattr(server_module, "HEAD_DEADLINE_S", 1.0)
    port = server_with([Const()])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as slow:
        slow.sendall(b"GET /metrics HTTP/1.1\r\n")
        started = time.monotonic()
        while not _closed(slow) and time.monotonic() - started < 20:
            try:
                slow.sendall(b"X")  # a byte well within the read timeout, and the headers never end
            except OSError:
                break
            time.sleep(0.2)
        took = time.monotonic() - started
    assert took < 6, "a trickling client held its connection for {:.1f} s (deadline 1 s)".format(took)


def test_serves_without_bcrypt_installed_unless_users_need_it(tmp_path):
    """A trainer installed on a Jetson with `pip3 install --no-deps .` has no bcrypt: serving must not need it;
    a web config with basic_auth_users then says, in one line, what to install."""
    web = tmp_path / "web.yml"
    web.write_text("basic_auth_users:\n  alice: " + bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode() + "\n")
    code = ("import sys; sys.modules['bcrypt'] = None\n"
            "from prometheus_client import CollectorRegistry\n"
            "from exporter.config import ConfigError\n"
            "from exporter.server import load_web_config, serve_registry\n"
            "server = serve_registry(('127.0.0.1', 0), CollectorRegistry(), None); server.close()\n"
            "try:\n    load_web_config(sys.argv[1])\nexcept ConfigError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code, str(web)], capture_output=True, text=True, timeout=60,
                          env=child_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{}: basic_auth_users needs the bcrypt package; install it (pip3 install bcrypt) " \
                                  "or drop basic_auth_users".format(web)

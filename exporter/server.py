"""HTTP(S) /metrics, with TLS and basic auth configured like Prometheus' web-config.yml.

web-config.yml (the exporter-toolkit format; relative paths are relative to the file):
  tls_server_config:
    cert_file: server.crt
    key_file: server.key
    client_ca_file: ca.crt                 # optional: verify client certificates
    client_auth_type: RequireAndVerifyClientCert   # or VerifyClientCertIfGiven, NoClientCert
    min_version: TLS12                     # or TLS13
  basic_auth_users:
    alice: $2y$10$...                      # bcrypt hash (htpasswd -nBC 10 alice)
The server only answers GET /metrics (and a small index page): it offers no
control action of any kind (no power mode, fan or clock changes) over HTTP.
"""
import base64
import binascii
import hashlib
import logging
import os
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import bcrypt
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from exporter.config import ConfigError
from exporter.metrics import METRICS, Sample
from exporter.yamlfile import read_mapping

log = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
TLS_KEYS = ("cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version")


class WebConfig(NamedTuple):
    tls: Optional[ssl.SSLContext]
    users: Dict[str, bytes]


def load_web_config(path: str) -> WebConfig:
    """Parse and check a web-config.yml; every problem is one ConfigError line."""
    base = os.path.dirname(os.path.abspath(path))
    data = read_mapping(path, "--web.config.file", ConfigError, "web config")
    for key in data:
        if key not in ("tls_server_config", "basic_auth_users"):
            raise ConfigError("{}: unknown key {!r} (known: tls_server_config, basic_auth_users)".format(path, key))
    users = {}
    for user, hashed in (data.get("basic_auth_users") or {}).items():
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise ConfigError("{}: key 'basic_auth_users.{}': must be a bcrypt hash ($2y$...)".format(path, user))
        users[str(user)] = hashed.encode()
    tls_cfg = data.get("tls_server_config")
    return WebConfig(_tls_context(path, base, tls_cfg) if tls_cfg else None, users)


def _tls_context(path: str, base: str, cfg: Any) -> ssl.SSLContext:
    if not isinstance(cfg, dict):
        raise ConfigError("{}: key 'tls_server_config': must be a mapping".format(path))
    for key in cfg:
        if key not in TLS_KEYS:
            raise ConfigError("{}: unknown key 'tls_server_config.{}' (known: {})".format(path, key, ", ".join(TLS_KEYS)))

    def file_of(key: str) -> str:
        f = os.path.join(base, str(cfg[key]))
        if not os.path.isfile(f):
            raise ConfigError("{}: key 'tls_server_config.{}': file {} does not exist".format(path, key, f))
        return f

    for key in ("cert_file", "key_file"):
        if key not in cfg:
            raise ConfigError("{}: key 'tls_server_config.{}' is required for TLS".format(path, key))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    min_version = cfg.get("min_version", "TLS12")
    if min_version not in TLS_VERSIONS:
        _bad(path, "min_version", "must be TLS12 or TLS13")
    ctx.minimum_version = TLS_VERSIONS[min_version]
    try:
        ctx.load_cert_chain(file_of("cert_file"), file_of("key_file"))
    except ssl.SSLError as e:
        raise ConfigError("{}: key 'tls_server_config.cert_file'/'key_file': cannot load ({})".format(path, e.reason))
    auth = cfg.get("client_auth_type", "RequireAndVerifyClientCert" if "client_ca_file" in cfg else "NoClientCert")
    if auth not in CLIENT_AUTH:
        _bad(path, "client_auth_type", "must be one of " + ", ".join(CLIENT_AUTH))
    ctx.verify_mode = CLIENT_AUTH[auth]
    if auth != "NoClientCert":
        if "client_ca_file" not in cfg:
            _bad(path, "client_ca_file", "is required when client_auth_type is " + auth)
        ctx.load_verify_locations(file_of("client_ca_file"))
    return ctx


def _bad(path: str, key: str, what: str) -> Any:
    raise ConfigError("{}: key 'tls_server_config.{}': {}".format(path, key, what))


class SnapshotCollector:
    """prometheus_client custom collector over the sampler's latest snapshot."""

    def __init__(self, snapshot) -> None:
        self._snapshot = snapshot

    def collect(self):
        by_name = {}  # type: Dict[str, List[Sample]]
        for s in self._snapshot():
            by_name.setdefault(s.name, []).append(s)
        for name, samples in by_name.items():
            spec = METRICS[name]
            cls = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
            fam = cls(name, spec.help, labels=spec.labels)
            for s in samples:
                fam.add_metric([s.labels[k] for k in spec.labels], s.value)
            yield fam


class _Auth:
    """bcrypt check with a cache of verified passwords, so each scrape doesn't pay ~50 ms of bcrypt."""

    def __init__(self, users: Dict[str, bytes]) -> None:
        self.users = users
        self._ok = set()  # type: set
        self._lock = threading.Lock()

    def allows(self, header: Optional[str]) -> bool:
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if hashed is None:
            return False
        key = hashlib.sha256(b"\0".join([user.encode(), password.encode(), hashed])).digest()
        with self._lock:
            if key in self._ok:
                return True
        if not bcrypt.checkpw(password.encode(), hashed):
            return False
        with self._lock:
            self._ok.add(key)
        return True


class _Handler(BaseHTTPRequestHandler):
    server_version = "edgescope-exporter"
    timeout = 10

    def setup(self) -> None:
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()  # in this request's thread, not the accept loop

    def do_GET(self) -> None:
        if not self.server.auth.allows(self.headers.get("Authorization")):
            self._reply(401, b"Unauthorized\n", "text/plain", {"WWW-Authenticate": 'Basic realm="edgescope"'})
        elif self.path.split("?")[0] == "/metrics":
            self._reply(200, generate_latest(self.server.registry), CONTENT_TYPE)
        elif self.path == "/":
            self._reply(200, b"<html><body><h1>edgescope exporter</h1><a href=\"/metrics\">/metrics</a></body></html>\n", "text/html")
        else:
            self._reply(404, b"Not found: only /metrics is served\n", "text/plain")

    def do_POST(self) -> None:
        self._reply(405, b"Method not allowed: the exporter is read-only\n", "text/plain", {"Allow": "GET"})

    do_PUT = do_DELETE = do_PATCH = do_POST

    def _reply(self, code: int, body: bytes, ctype: str, headers: Optional[Dict[str, str]] = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: scrapes every few seconds
        pass


class MetricsServer(ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: Tuple[str, int], snapshot, web: Optional[WebConfig]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET  # ':9945' = all IPv4
        super().__init__(address, _Handler)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(snapshot))
        self.auth = _Auth(web.users if web else {})
        if web and web.tls:
            self.socket = web.tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client failing the TLS handshake (no or bad certificate) loses only its own connection."""
        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError, socket.timeout)):
            log.debug("connection from %s dropped: %s", client_address, sys.exc_info()[1])
            return
        super().handle_error(request, client_address)

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # '[::]:9945' serves v4 and v6
        super().server_bind()


def split_address(address: str) -> Tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def serve(address: str, snapshot, web: Optional[WebConfig]) -> MetricsServer:
    """Bind (ConfigError naming the address if it is busy) and serve in a background thread."""
    try:
        server = MetricsServer(split_address(address), snapshot, web)
    except OSError as e:
        raise ConfigError("--web.listen-address {}: cannot listen ({}); choose another address or port".format(
            address, e.strerror or e))
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server

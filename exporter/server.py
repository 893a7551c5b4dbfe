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
The server only answers GET/HEAD /metrics (and a small index page): it offers no
control action of any kind (no power mode, fan or clock changes) over HTTP.
Both endpoints (exporter and trainer) use this one server: every read has a
timeout, request lines and headers are bounded, bodies are never read.
"""
import base64
import hashlib
import logging
import os
import re
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

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
# A bcrypt hash in canonical form: cost 04..31, a 22-character salt whose last character carries 2 bits and a
# 31-character digest whose last one carries 4 (so a placeholder such as "REPLACE.WITH..." is refused at load).
BCRYPT_HASH = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{21}[.Oeu][./A-Za-z0-9]{30}[.CGKOSWaeimquy26]$")
BCRYPT_MAX_PASSWORD_BYTES = 72  # bcrypt ignores (bcrypt >= 5: refuses) anything longer
# One check doubles in cost with each step: cost 12 took 0.24 s on an x86 core (more on a Jetson's); cost 31
# would be days, at start-up (the dummy hash) and then for every wrong password. Above 12 is refused at load.
BCRYPT_MAX_COST = 12
# At most this many bcrypt checks run at once (passwords not yet verified, wrong ones, unknown users); a request
# finding them all busy is answered 429 at once, so wrong passwords cost at most this many cores, never a queue.
BCRYPT_CONCURRENT = 2
# A listen backlog for a monitoring host with several Prometheus servers and curls (socketserver's default is 5:
# a burst of scrapes had its SYNs dropped and retried past Prometheus' 10 s timeout). The kernel caps it at
# net.core.somaxconn (4096 on Linux >= 5.4, 128 before).
LISTEN_BACKLOG = 1024
READ_TIMEOUT_S = 10  # a client silent for this long loses its connection
CONNECTION_DEADLINE_S = 30  # no connection lives longer (Prometheus' scrape timeout is 10 s by default)


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
    for user, hashed in _mapping(path, "basic_auth_users", data.get("basic_auth_users")).items():
        if not isinstance(user, str):  # YAML 1.1 reads on/off/yes/no/true/false as booleans, null as nothing
            read, kind = _yaml_reading(user)
            raise ConfigError("{}: key 'basic_auth_users.{}': YAML reads this user name as {} ({}), not as a name "
                              "(on, off, yes, no, true, false, null and numbers are not names to it); quote it: "
                              "'name': '$2y$10$...'".format(path, read, read, kind))
        if not isinstance(hashed, str) or not BCRYPT_HASH.match(hashed):
            raise ConfigError("{}: key 'basic_auth_users.{}': must be a bcrypt hash of 60 characters ($2y$10$...); "
                              "make one with `htpasswd -nBC 10 {}`".format(path, user, user))
        if _cost(hashed) > BCRYPT_MAX_COST:
            raise ConfigError("{}: key 'basic_auth_users.{}': bcrypt cost {} is above {} (each wrong password would "
                              "cost {}x a cost-10 check); make one with `htpasswd -nBC 10 {}`"
                              .format(path, user, _cost(hashed), BCRYPT_MAX_COST, 2 ** (_cost(hashed) - 10), user))
        users[user] = hashed.encode()
    if users:
        _bcrypt(path)  # missing now is one line at start, not a failure at the first scrape
    tls_cfg = data.get("tls_server_config")
    return WebConfig(None if tls_cfg is None else _tls_context(path, base, tls_cfg), users)


def _yaml_reading(value: object) -> Tuple[str, str]:
    """How YAML wrote a key it did not read as text, and what it read it as."""
    if value is None:
        return "null", "nothing"
    if isinstance(value, bool):
        return str(value).lower(), "a boolean"
    return str(value), "a number" if isinstance(value, (int, float)) else "not text"


def _cost(hashed: str) -> int:
    """The cost field of a hash BCRYPT_HASH matched: $2y$<cost>$..."""
    return int(hashed[4:6])


def _bcrypt(path: str) -> Any:
    """The bcrypt module, needed only for basic_auth_users: a trainer installed on a Jetson with
    `pip3 install --no-deps .` and the small dependencies has none, and serves without auth fine."""
    try:
        import bcrypt
    except ImportError:
        raise ConfigError("{}: basic_auth_users needs the bcrypt package; install it (pip3 install bcrypt) "
                          "or drop basic_auth_users".format(path))
    return bcrypt


def _mapping(path: str, key: str, value: Any) -> Dict[Any, Any]:
    """``value`` of ``key`` as a mapping (absent or empty: {}), else one ConfigError line."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError("{}: key '{}': must be a mapping (key: value lines), not a {}"
                          .format(path, key, type(value).__name__))
    return value


def _tls_context(path: str, base: str, cfg: Any) -> ssl.SSLContext:
    cfg = _mapping(path, "tls_server_config", cfg)
    for key, value in cfg.items():
        if key not in TLS_KEYS:
            raise ConfigError("{}: unknown key 'tls_server_config.{}' (known: {})".format(path, key, ", ".join(TLS_KEYS)))
        if not isinstance(value, str):
            _bad(path, key, "must be a string, not a {}".format(type(value).__name__))

    def file_of(key: str) -> str:
        f = os.path.join(base, cfg[key])
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
        ctx.load_cert_chain(file_of("cert_file"), file_of("key_file"), password=lambda: b"")  # no prompt
    except ssl.SSLError as e:
        raise ConfigError("{}: key 'tls_server_config.cert_file'/'key_file': cannot load ({})".format(path, e.reason or e))
    auth = cfg.get("client_auth_type", "RequireAndVerifyClientCert" if "client_ca_file" in cfg else "NoClientCert")
    if auth not in CLIENT_AUTH:
        _bad(path, "client_auth_type", "must be one of " + ", ".join(CLIENT_AUTH))
    ctx.verify_mode = CLIENT_AUTH[auth]
    if auth != "NoClientCert":
        if "client_ca_file" not in cfg:
            _bad(path, "client_ca_file", "is required when client_auth_type is " + auth)
        ca_file = file_of("client_ca_file")
        try:
            ctx.load_verify_locations(ca_file)
        except (ssl.SSLError, ValueError) as e:
            _bad(path, "client_ca_file", "{} is not a PEM CA certificate ({})".format(ca_file, getattr(e, "reason", e)))
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
    """bcrypt check with a cache of verified passwords, so each scrape doesn't pay ~50 ms of bcrypt.
    An unknown user is checked against a dummy hash of the same cost, so that answering 401 takes as
    long for a user that does not exist as for a wrong password (no user enumeration by timing).
    At most BCRYPT_CONCURRENT checks run at once; beyond that ``allows`` answers BUSY without one."""
    BUSY = None  # neither allowed nor refused: answer 429, try again

    def __init__(self, users: Dict[str, bytes]) -> None:
        self.users = users
        self._ok = set()  # type: set
        self._lock = threading.Lock()
        self._checks = threading.BoundedSemaphore(BCRYPT_CONCURRENT)
        costs = [_cost(hashed.decode()) for hashed in users.values()]
        self._bcrypt = _bcrypt("--web.config.file") if users else None
        self._dummy = self._bcrypt.hashpw(b"no such user", self._bcrypt.gensalt(rounds=max(costs))) if costs else b""

    def allows(self, header: Optional[str]) -> Optional[bool]:
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except ValueError:  # not base64 (binascii.Error), not ASCII, not UTF-8 (UnicodeDecodeError)
            return False
        secret = password.encode()
        if len(secret) > BCRYPT_MAX_PASSWORD_BYTES:
            return False  # bcrypt >= 5 raises on these; no user may have such a password
        hashed = self.users.get(user)
        key = hashlib.sha256(b"\0".join([user.encode(), secret, hashed or b""])).digest()
        with self._lock:
            if hashed is not None and key in self._ok:
                return True
        if not self._checks.acquire(blocking=False):
            return self.BUSY
        try:  # an unknown user pays the same work as a known one
            ok = self._bcrypt.checkpw(secret, self._dummy if hashed is None else hashed) and hashed is not None
        finally:
            self._checks.release()
        if ok:
            with self._lock:
                self._ok.add(key)
        return ok


class _Handler(BaseHTTPRequestHandler):
    """GET/HEAD of /metrics (and a tiny index at /); 405 for any other method, 404 for any other path.
    Request bodies are never read; the Server header names no Python version."""
    server_version = "edgescope"
    timeout = READ_TIMEOUT_S  # per read: a silent client cannot hold its connection

    def setup(self) -> None:
        # ... nor can one that trickles a byte at a time: the whole exchange has a deadline
        self._deadline = threading.Timer(CONNECTION_DEADLINE_S, self._cut)
        self._deadline.daemon = True
        self._deadline.start()
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()  # in this request's thread, not the accept loop

    def finish(self) -> None:
        self._deadline.cancel()
        super().finish()

    def _cut(self) -> None:
        try:
            self.request.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed

    def version_string(self) -> str:
        return self.server_version

    def send_response_only(self, code: int, message: Optional[str] = None) -> None:
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # every answer has a status line and headers, never a bare body
        super().send_response_only(code, message)

    def do_GET(self) -> None:
        allowed = self.server.auth.allows(self.headers.get("Authorization"))
        if allowed is _Auth.BUSY:
            self._reply(429, b"Too many password checks at once: try again\n", "text/plain", {"Retry-After": "1"})
        elif not allowed:
            self._reply(401, b"Unauthorized\n", "text/plain", {"WWW-Authenticate": 'Basic realm="edgescope"'})
        elif self.path.split("?")[0] == "/metrics":
            self._reply(200, generate_latest(self.server.registry), CONTENT_TYPE)
        elif self.path == "/":
            self._reply(200, b"<html><body><h1>edgescope</h1><a href=\"/metrics\">/metrics</a></body></html>\n", "text/html")
        else:
            self._reply(404, b"Not found: only /metrics is served\n", "text/plain")

    def do_HEAD(self) -> None:
        self._head_only = True
        self.do_GET()

    def not_allowed(self) -> None:
        self._reply(405, b"Method not allowed: the endpoint is read-only\n", "text/plain", {"Allow": "GET, HEAD"})

    def __getattr__(self, name: str) -> Any:
        """Every method but GET and HEAD (POST, OPTIONS, TRACE, made-up ones) is answered 405, not 501."""
        if name.startswith("do_"):
            return self.not_allowed
        raise AttributeError(name)

    def _reply(self, code: int, body: bytes, ctype: str, headers: Optional[Dict[str, str]] = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not getattr(self, "_head_only", False):
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: scrapes every few seconds
        pass


class MetricsServer(ThreadingMixIn, HTTPServer):
    """Serves ``registry`` (the exporter's snapshot, the trainer's TrainMetrics.registry) on /metrics."""
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(self, address: Tuple[str, int], registry: CollectorRegistry, web: Optional[WebConfig]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET  # ':9945' = all IPv4
        super().__init__(address, _Handler)
        self.registry = registry
        self.auth = _Auth(web.users if web else {})
        if web and web.tls:
            self.socket = web.tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    @property
    def port(self) -> int:
        return self.server_port

    @property
    def scheme(self) -> str:
        return "https" if isinstance(self.socket, ssl.SSLSocket) else "http"

    def close(self) -> None:
        self.shutdown()
        self.server_close()

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


def serve_registry(address: Tuple[str, int], registry: CollectorRegistry, web: Optional[WebConfig]) -> MetricsServer:
    """Bind (OSError if the address is busy or wrong) and serve in a background thread."""
    server = MetricsServer(address, registry, web)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server


def serve(address: str, snapshot, web: Optional[WebConfig]) -> MetricsServer:
    """The exporter's endpoint: bind (ConfigError naming the address if it is busy) and serve."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    try:
        return serve_registry(split_address(address), registry, web)
    except OSError as e:
        raise ConfigError("--web.listen-address {}: cannot listen ({}); choose another address or port".format(
            address, e.strerror or e))

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
Both endpoints (exporter and trainer) use this one server (``MetricsServer``): request heads are gathered
without a thread and within a deadline, answers come from a fixed pool of threads, request lines and headers
are bounded, bodies are never read. (cheroot was weighed: its bounded pool reads each request head in a pool
thread with a per-read timeout, so 50 idle half-sent requests held a scrape 41 s.)
"""
import base64
import hashlib
import io
import ipaddress
import logging
import os
import queue
import re
import selectors
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler
from socketserver import _SocketWriter  # type: ignore[attr-defined]  # the unbuffered writer handlers use
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
BCRYPT_HASH = re.compile(r"^\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{21}[.Oeu][./A-Za-z0-9]{30}[.CGKOSWaeimquy26]\Z")
BCRYPT_MAX_PASSWORD_BYTES = 72  # bcrypt ignores (bcrypt >= 5: refuses) anything longer
# One check doubles in cost with each step: cost 12 took 0.24 s on an x86 core (more on a Jetson's); cost 31
# would be days, at start-up (the dummy hash) and then for every wrong password. Above 12 is refused at load.
BCRYPT_MAX_COST = 12
# At most this many bcrypt checks run at once (passwords not yet verified, wrong ones, unknown users), and one
# per client; a request finding no free check is answered 429 at once, so wrong passwords cost at most this many
# cores, never a queue, and one client's flood leaves a check free for the others.
BCRYPT_CONCURRENT = 2
# A listen backlog for a monitoring host with several Prometheus servers and curls (socketserver's default is 5:
# a burst of scrapes had its SYNs dropped and retried past Prometheus' 10 s timeout). The kernel caps it at
# net.core.somaxconn (4096 on Linux >= 5.4, 128 before).
LISTEN_BACKLOG = 1024
HEAD_DEADLINE_S = 10  # the request line and headers arrive whole within this, or the connection is closed
CONNECTION_DEADLINE_S = 30  # no connection lives longer (Prometheus' scrape timeout is 10 s by default)
MAX_HEAD_BYTES = 64 * 1024  # request line and headers together; past it: 431
HEAD_TOO_LARGE = b"HTTP/1.0 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
# Open connections (heads arriving, requests queued or being answered), well under the usual 1024 descriptors
# of a service; past it the longest-waiting unfinished head is closed, so a flood of idle clients cannot keep
# a scrape out. Answers are written by this many threads, whatever the number of clients.
MAX_CONNECTIONS = 512
SERVER_THREADS = 8


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
    At most BCRYPT_CONCURRENT checks run at once, and at most one per client (``client_key``): beyond that
    ``allows`` answers BUSY without one, so a client flooding wrong passwords holds one check and the
    others still get theirs (a bound shared by all let one attacker answer 429 to everyone)."""
    BUSY = None  # neither allowed nor refused: answer 429, try again

    def __init__(self, users: Dict[str, bytes]) -> None:
        self.users = users
        self._ok = set()  # type: set
        self._lock = threading.Lock()
        self._checking = set()  # type: set  # clients with a check running
        costs = [_cost(hashed.decode()) for hashed in users.values()]
        self._bcrypt = _bcrypt("--web.config.file") if users else None
        self._dummy = self._bcrypt.hashpw(b"no such user", self._bcrypt.gensalt(rounds=max(costs))) if costs else b""

    def allows(self, header: Optional[str], client: str) -> Optional[bool]:
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
            if client in self._checking or len(self._checking) >= BCRYPT_CONCURRENT:
                return self.BUSY
            self._checking.add(client)
        try:  # an unknown user pays the same work as a known one
            ok = self._bcrypt.checkpw(secret, self._dummy if hashed is None else hashed) and hashed is not None
        finally:
            with self._lock:
                self._checking.discard(client)
        if ok:
            with self._lock:
                self._ok.add(key)
        return ok


class _Handler(BaseHTTPRequestHandler):
    """GET/HEAD of /metrics (and a tiny index at /); 405 for any other method, 404 for any other path.
    It parses a request head the server has already gathered whole (``_Connection.head``): no read here can
    wait on the client. Request bodies are never read; the Server header names no Python version."""
    server_version = "edgescope"

    def setup(self) -> None:
        connection = self.request  # type: _Connection
        self.connection = self.request = connection.sock
        self.rfile = io.BytesIO(connection.head)
        self.wfile = _SocketWriter(connection.sock)
        self.client_key = connection.client_key

    def version_string(self) -> str:
        return self.server_version

    def send_response_only(self, code: int, message: Optional[str] = None) -> None:
        if self.request_version == "HTTP/0.9":
            self.request_version = "HTTP/1.0"  # every answer has a status line and headers, never a bare body
        super().send_response_only(code, message)

    def do_GET(self) -> None:
        allowed = self.server.auth.allows(self.headers.get("Authorization"), self.client_key)
        if allowed is _Auth.BUSY:
            self._reply(429, b"Too many password checks at once: try again\n", "text/plain", {"Retry-After": "1"})
        elif not allowed:
            self._reply(401, b"Unauthorized\n", "text/plain", {"WWW-Authenticate": 'Basic realm="edgescope"'})
        elif self.path.split("?")[0] == "/metrics":
            self._reply(200, self.server.exposition.render(), CONTENT_TYPE)
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


class _Exposition:
    """The registry rendered once for every scrape waiting at that moment: each answer is rendered after its
    request arrived, and 200 scrapes at once cost a few renders, not 200 (the trainer's 5 histograms of 103
    buckets took seconds of one core's time under a burst, beside the training loop)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._changed = threading.Condition()
        self._started = 0  # renders begun
        self._finished = 0  # the number of the latest render done
        self._rendering = False
        self._body = b""

    def render(self) -> bytes:
        with self._changed:
            wanted = self._started + 1  # a render that begins after this request arrived
            while self._finished < wanted:
                if self._rendering:
                    self._changed.wait()
                    continue
                self._rendering, self._started = True, self._started + 1
                number = self._started
                try:
                    self._changed.release()
                    try:
                        body = generate_latest(self._registry)
                    finally:
                        self._changed.acquire()
                    self._body, self._finished = body, number
                finally:
                    self._rendering = False
                    self._changed.notify_all()
            return self._body


def client_key(address: Any) -> str:
    """Whom a password check is charged to: the client's IPv4 address, or its IPv6 /64 (one host's share)."""
    host = str(address[0]) if isinstance(address, tuple) and address else str(address)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ip.ipv4_mapped or ipaddress.ip_network("{}/64".format(ip), strict=False))
    return str(ip)


class _Connection:
    """One accepted connection: its request head while it arrives, then its answer; cut at its deadlines."""

    def __init__(self, sock: socket.socket, address: Any) -> None:
        self.sock = sock
        self.address = address
        self.client_key = client_key(address)
        accepted = time.monotonic()
        self.head_deadline = accepted + HEAD_DEADLINE_S
        self.deadline = accepted + CONNECTION_DEADLINE_S
        self.handshaken = not isinstance(sock, ssl.SSLSocket)
        self.head = b""

    def add(self, chunk: bytes) -> bool:
        """Appends what arrived; whether the head is now whole: the blank line after the headers has come (or,
        for a bare `GET /` of HTTP/0.9, its one line). Only the new bytes are searched, so a client sending a
        byte at a time costs linear work, not quadratic."""
        seen = len(self.head)
        self.head += chunk
        if re.search(rb"\r?\n\r?\n", self.head[max(0, seen - 3):]):
            return True
        first_line_ended = b"\n" in chunk and b"\n" not in self.head[:seen]
        return first_line_ended and bool(re.match(rb"[^\r\n ]+ [^\r\n ]+\r?\n", self.head))

    def cut(self) -> None:
        """Ends the exchange from any thread; a send or read in progress fails at once."""
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)  # the plain call: leaves the TLS object alone
        except OSError:
            pass  # already closed


class MetricsServer:
    """Serves ``registry`` (the exporter's snapshot, the trainer's TrainMetrics.registry) on /metrics.

    One thread accepts connections and gathers their request heads without blocking on any of them; a
    connection whose head is not whole within HEAD_DEADLINE_S is closed, and at MAX_CONNECTIONS the oldest
    unfinished head gives way, so idle or trickling clients cost a socket each, never a thread. Whole
    requests are answered by SERVER_THREADS threads; no connection outlives CONNECTION_DEADLINE_S."""

    def __init__(self, address: Tuple[str, int], registry: CollectorRegistry, web: Optional[WebConfig]) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET  # ':9945' = all IPv4
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # '[::]:9945' serves v4 and v6
            self.socket.bind(address)
            self.socket.listen(LISTEN_BACKLOG)
        except OSError:
            self.socket.close()
            raise
        self.socket.setblocking(False)
        self.registry = registry
        self.exposition = _Exposition(registry)
        self.auth = _Auth(web.users if web else {})
        self._tls = web.tls if web else None
        self._heads = {}  # type: Dict[int, _Connection]  # by file descriptor, oldest first
        self._answering = set()  # type: set
        self._lock = threading.Lock()  # over _answering, shared with the answering threads
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._requests = queue.Queue()  # type: queue.Queue
        for n in range(SERVER_THREADS):
            threading.Thread(target=self._answer_loop, name="http-{}".format(n), daemon=True).start()

    @property
    def port(self) -> int:
        return self.socket.getsockname()[1]

    @property
    def scheme(self) -> str:
        return "https" if self._tls else "http"

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """Accepts and gathers request heads until ``shutdown``."""
        self._stopped.clear()
        self._selector.register(self.socket, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        try:
            while not self._stopping.is_set():
                waits = [c.head_deadline for c in self._heads.values()]
                timeout = min([poll_interval] + [max(0.0, w - time.monotonic()) for w in waits[:1]])
                for key, _ in self._selector.select(timeout):
                    if key.fileobj is self.socket:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        self._wake_r.recv(64)
                    else:
                        self._gather(key.data)
                self._expire()
        finally:
            for fileobj in (self.socket, self._wake_r):
                self._selector.unregister(fileobj)
            self._stopped.set()

    def shutdown(self) -> None:
        """Stops ``serve_forever`` and waits until it has."""
        self._stopping.set()
        self._wake_w.send(b"x")
        self._stopped.wait()

    def server_close(self) -> None:
        """Closes the socket and every connection; the answering threads end."""
        for connection in list(self._heads.values()):
            self._drop(connection)
        with self._lock:
            for connection in self._answering:
                connection.cut()
        for _ in range(SERVER_THREADS):
            self._requests.put(None)
        self.socket.close()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def close(self) -> None:
        self.shutdown()
        self.server_close()

    def _accept(self) -> None:
        for _ in range(LISTEN_BACKLOG):  # each wake-up takes what is waiting, up to the backlog
            try:
                sock, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # out of descriptors, or the client gave up: try on the next wake-up
                log.debug("accept failed: %s", error)
                return
            if len(self._heads) + len(self._answering) >= MAX_CONNECTIONS:
                if not self._heads:
                    sock.close()  # all answering: this one waits its turn in its client's retry
                    continue
                self._drop(next(iter(self._heads.values())))  # the longest-waiting unfinished head
            sock.setblocking(False)
            if self._tls:
                sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            connection = _Connection(sock, address)
            self._heads[sock.fileno()] = connection
            self._selector.register(sock, selectors.EVENT_READ, connection)
            self._gather(connection)  # the request is often there already

    def _gather(self, connection: _Connection) -> None:
        """Reads what has arrived; a whole head goes to an answering thread."""
        try:
            if not connection.handshaken:
                connection.sock.do_handshake()
                connection.handshaken = True
                self._wait_for(connection, selectors.EVENT_READ)
            while len(connection.head) <= MAX_HEAD_BYTES:
                chunk = connection.sock.recv(MAX_HEAD_BYTES + 1 - len(connection.head))
                if not chunk or connection.add(chunk):  # the client sent all it will, or the whole head
                    break
        except ssl.SSLWantWriteError:  # a TLS handshake waits to send
            self._wait_for(connection, selectors.EVENT_WRITE)
            return
        except ssl.SSLWantReadError:
            self._wait_for(connection, selectors.EVENT_READ)
            return
        except (BlockingIOError, InterruptedError):
            return
        except OSError as error:  # a failed handshake (no or bad certificate), a reset
            log.debug("connection from %s dropped: %s", connection.address, error)
            self._drop(connection)
            return
        if not connection.head:
            self._drop(connection)
            return
        self._selector.unregister(connection.sock)
        del self._heads[connection.sock.fileno()]
        with self._lock:
            self._answering.add(connection)
        self._requests.put(connection)

    def _wait_for(self, connection: _Connection, events: int) -> None:
        if self._selector.get_key(connection.sock).events != events:
            self._selector.modify(connection.sock, events, connection)

    def _expire(self) -> None:
        now = time.monotonic()
        for connection in [c for c in self._heads.values() if c.head_deadline <= now]:
            self._drop(connection)
        with self._lock:
            for connection in self._answering:
                if connection.deadline <= now:
                    connection.cut()

    def _drop(self, connection: _Connection) -> None:
        self._heads.pop(connection.sock.fileno(), None)
        try:
            self._selector.unregister(connection.sock)
        except (KeyError, ValueError):
            pass
        connection.sock.close()

    def _answer_loop(self) -> None:
        while True:
            connection = self._requests.get()
            if connection is None:
                return
            try:
                if len(connection.head) > MAX_HEAD_BYTES:
                    connection.sock.sendall(HEAD_TOO_LARGE)
                else:
                    connection.sock.settimeout(max(0.001, connection.deadline - time.monotonic()))
                    _Handler(connection, connection.address, self)
            except (OSError, ValueError) as error:  # cut at the deadline, reset, TLS failures; sendall on a cut
                log.debug("connection from %s dropped: %s", connection.address, error)
            except Exception:
                log.exception("answering %s failed", connection.address)
            finally:
                with self._lock:
                    self._answering.discard(connection)
                connection.cut()
                connection.sock.close()


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

"""HTTP GETs with a deadline for the whole request, for every client in edgescope (the trainer reading an
exporter, the report reading Prometheus).

requests' ``timeout`` bounds each socket read, not the request: a server sending one byte a second held the
trainer before its first epoch, and the report past ``--timeout 2``, for minutes. Here every connection a
request uses is noted as it is opened or sent on, and cut (``shutdown``) when the deadline passes, whatever
phase it is in (connect, TLS handshake, headers, body); the body is read in chunks up to a size bound.
DNS resolution is the one wait not covered (it happens in the C library, before there is a socket to cut).
"""
import socket
import threading
from typing import Any, List

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_watching = threading.local()  # .watch: the _Watch of the request running on this thread


class AnswerTooLarge(requests.RequestException):
    """The answer's body is larger than the caller's bound."""


class _Watch:
    """The connections of one request, cut together at its deadline."""

    def __init__(self) -> None:
        self.connections = []  # type: List[Any]
        self.expired = False
        self._lock = threading.Lock()

    def add(self, connection: Any) -> None:
        with self._lock:
            self.connections.append(connection)

    def cut(self) -> None:
        with self._lock:
            self.expired = True
            for connection in self.connections:
                sock = getattr(connection, "sock", None)
                if sock is not None:
                    try:  # the plain call, also on a TLS socket: a read or handshake in progress fails at once
                        socket.socket.shutdown(sock, socket.SHUT_RDWR)
                    except OSError:
                        pass  # closed already


class _Watched:
    """A urllib3 connection that puts itself under the current request's watch when it connects or sends."""

    def _watched(self) -> None:
        watch = getattr(_watching, "watch", None)
        if watch is not None:
            watch.add(self)

    def connect(self) -> None:
        self._watched()
        super().connect()  # type: ignore[misc]

    def putrequest(self, *args: Any, **kwargs: Any) -> None:  # a kept-alive connection is not connected again
        self._watched()
        super().putrequest(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(_Watched, HTTPConnection):
    pass


class _HTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class _Adapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def session() -> requests.Session:
    """A requests session whose connections ``get`` can cut at a deadline."""
    made = requests.Session()
    for prefix in ("http://", "https://"):
        made.mount(prefix, _Adapter())
    return made


def get(client: requests.Session, url: str, deadline_s: float, max_bytes: int, **kwargs: Any) -> requests.Response:
    """``client.get(url, **kwargs)`` (``client`` from ``session()``), answered whole within ``deadline_s``
    seconds, else requests.Timeout; a body over ``max_bytes`` raises AnswerTooLarge. Other failures are
    requests' own exceptions."""
    watch = _Watch()
    timer = threading.Timer(deadline_s, watch.cut)
    timer.daemon = True
    _watching.watch = watch
    timer.start()
    response = None
    try:
        response = client.get(url, timeout=deadline_s, stream=True, **kwargs)
        body = bytearray()
        for chunk in response.iter_content(64 * 1024):
            body += chunk
            if len(body) > max_bytes:
                raise AnswerTooLarge("{} answered more than {} MiB".format(url, max_bytes >> 20))
        if watch.expired:  # a cut can read as an answer that just ended
            raise requests.Timeout(_late(deadline_s))
        response._content = bytes(body)  # what .text and .json() read
        return response
    except (requests.RequestException, OSError) as error:
        if watch.expired:
            raise requests.Timeout(_late(deadline_s)) from error
        raise
    finally:
        timer.cancel()
        _watching.watch = None
        if response is not None:
            response.close()


def _late(deadline_s: float) -> str:
    return "no whole answer within {:g} s".format(deadline_s)

"""Many /metrics endpoints, one port each, served by one asyncio loop in one thread.

A thread per endpoint would cost thousands of threads for a few hundred
boards; one event loop answers every scrape in turn (HTTP/1.1 keep-alive, as
Prometheus' scraper uses it) and renders the body at the moment of the scrape.
"""
import asyncio
import ipaddress
import socket
from typing import Callable, List, Sequence

Render = Callable[[], bytes]
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _response(code: int, reason: bytes, body: bytes, ctype: bytes = b"text/plain") -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n" % (code, reason, ctype, len(body))
    return head + body


async def _handle(render: Render, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            request = await reader.readuntil(b"\r\n\r\n")
            words = request.split(b"\r\n", 1)[0].split()
            if len(words) < 2 or words[0] != b"GET":
                writer.write(_response(405, b"Method Not Allowed", b"only GET /metrics\n"))
            elif words[1].split(b"?")[0] == b"/metrics":
                writer.write(_response(200, b"OK", render(), CONTENT_TYPE))
            else:
                writer.write(_response(404, b"Not Found", b"only /metrics is served\n"))
            await writer.drain()
            if b"connection: close" in request.lower():
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass  # the scraper went away or sent garbage: drop only this connection
    finally:
        writer.close()


class Endpoints:
    """Binds every endpoint up front (so a busy port fails before anything serves)."""

    def __init__(self, host: str, ports: Sequence[int], renders: Sequence[Render]) -> None:
        self.loop = asyncio.new_event_loop()
        self.servers = []  # type: List[asyncio.AbstractServer]
        self.ports = []  # type: List[int]
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            for port, render in zip(ports, renders):
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((host, port))
                except OSError as e:
                    sock.close()
                    raise OSError(e.errno, "cannot listen on {}:{} ({})".format(host, port, e.strerror or e))
                server = self.loop.run_until_complete(asyncio.start_server(
                    lambda r, w, render=render: _handle(render, r, w), sock=sock, backlog=64))
                self.servers.append(server)
                self.ports.append(sock.getsockname()[1])
        except BaseException:
            self.close()
            raise

    def run(self, stop: "asyncio.Future") -> None:
        """Serve until `stop` (a future of self.loop) is done."""
        self.loop.run_until_complete(stop)

    def close(self) -> None:
        for server in self.servers:
            server.close()
        for server in self.servers:
            self.loop.run_until_complete(server.wait_closed())
        self.loop.close()


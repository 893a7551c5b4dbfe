"""Debian's headless Chromium loading a page with every request sent to a
local proxy that answers none and records each request's host: what a
page fetches shows up there. Chromium's own background calls to Google's
update/time services go there too and are told apart by host."""
import shutil
import socket
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

CHROMIUM = shutil.which("chromium") or "chromium"
# Chromium itself (component updater, network time, sign-in), not the page.
OWN_HOSTS = ("google.com", "googleapis.com", "gvt1.com", "gstatic.com")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class RefusingProxy:
    """A TCP listener that reads each request's first line, closes, and keeps its host."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.hosts = []  # type: List[str]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(5)
                try:
                    line = connection.recv(4096).split(b"\r\n", 1)[0].decode("latin-1")
                except OSError:
                    continue
            target = line.split(" ")[1] if line.count(" ") >= 2 else line
            self.hosts.append(target.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0])

    def page_hosts(self) -> List[str]:
        """Hosts requested that are not Chromium's own services."""
        return [h for h in self.hosts if not any(h == o or h.endswith("." + o) for o in OWN_HOSTS)]

    def close(self) -> None:
        self.listener.close()


def chromium(page: Path, proxy: RefusingProxy, *extra: str, timeout: float = 180) -> str:
    """Chromium's stdout after loading the page (e.g. with --dump-dom); fails on a non-zero exit."""
    assert shutil.which(CHROMIUM), "no chromium: run scripts/install-deps.sh (Debian's chromium)"
    command = [CHROMIUM] + FLAGS + ["--proxy-server=http://127.0.0.1:{}".format(proxy.port),
                                    "--proxy-bypass-list=<-loopback>"] + list(extra) + [page.resolve().as_uri()]
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout.decode("utf-8")


def loaded(page: Path) -> Tuple["Dom", List[str]]:
    """The page's DOM after Chromium loaded it, and the hosts the page requested."""
    proxy = RefusingProxy()
    try:
        return Dom(chromium(page, proxy, "--dump-dom")), proxy.page_hosts()
    finally:
        proxy.close()


class Dom(HTMLParser):
    """Elements of a serialised DOM with their attributes, each table's cell texts and the list items' texts."""

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.elements = []  # type: List[Tuple[str, Dict[str, Optional[str]]]]
        self.tables = []  # type: List[List[List[str]]]
        self.items = []  # type: List[str]
        self._cell = None  # type: Optional[List[str]]
        self.feed(markup)

    def handle_starttag(self, tag: str, attrs: Sequence[Tuple[str, Optional[str]]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th", "li"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th", "li") and self._cell is not None:
            (self.items if tag == "li" else self.tables[-1][-1]).append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def tags(self, name: str) -> List[Dict[str, Optional[str]]]:
        return [attrs for tag, attrs in self.elements if tag == name]

"""What keeps other web sites out of `gradlab serve`: Host and Origin checks, security headers, the login cookie and
the /login rate limit.

A browser lets any page send requests to a server on localhost (a form POST, a multipart upload, an <img>), and a
DNS name rebound to 127.0.0.1 lets a page read the answers as its own. So every request, reading or changing state,
passes `Guard` first:

- its Host must be a name the server was bound or configured for (`hosts`: loopback names for a loopback bind; the
  bound address, this machine's names and `--allowed-host` otherwise), else 403: a rebound name never matches;
- an Origin header, when there is one, must be the server's own (same host, and port when Host names one), else 403;
  `Origin: null` (a sandboxed or privacy-stripped context) included;
- a browser's `Sec-Fetch-Site: cross-site` / `same-site` is refused unless it is a plain top-level navigation (GET or
  HEAD, `Sec-Fetch-Mode: navigate`): a link from a CI log still opens a run's page, a script cannot fetch it.

Clients that are not browsers (curl, `gradlab check --remote`) send no Origin and are not affected. Every answer
carries `X-Content-Type-Options: nosniff`; pages carry a CSP that allows no script and no framing
(`frame-ancestors 'none'`, `X-Frame-Options: DENY`) unless the route set its own (a run's HTML report is framed by
the run's page: `frame-ancestors 'self'`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import deque
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = ("0.0.0.0", "::", "")
# the UI's pages: their own styles inline, images inline or from this server, frames (the report) from this server only
PAGE_CSP = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; frame-src 'self'; form-action 'self'; "
            "base-uri 'none'; frame-ancestors 'none'")
DEFAULT_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                   (b"content-security-policy", PAGE_CSP.encode()), (b"referrer-policy", b"same-origin"))
SESSION_CONTEXT = b"gradlab serve session v1"


def is_loopback(host: str) -> bool:
    import ipaddress

    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(bind: str, extra=()) -> tuple[frozenset[str], bool]:
    """(the Host names a request may use, whether the address a connection came in on counts too).

    A loopback bind: the loopback names only. A wildcard bind (0.0.0.0, ::): the loopback names, this machine's
    name and fully qualified name, and the address each connection was made to (a client typing the IP address).
    Another address or name: it, and this machine's names. `extra` (--allowed-host) adds names; `*` accepts any
    Host (the token still guards every request)."""
    import socket

    names = {_normal(h) for h in extra}
    bind = _normal(bind)
    if is_loopback(bind):
        return frozenset(names | LOOPBACK_NAMES | {bind}), False
    names |= {_normal(socket.gethostname()), _normal(socket.getfqdn())}
    if bind in WILDCARDS:
        return frozenset(names | LOOPBACK_NAMES), True
    return frozenset(names | {bind}), False


def _normal(host: str) -> str:
    return host.strip().strip("[]").lower().rstrip(".")


def split_host(value: str) -> tuple[str, int | None]:
    """`Host: name:port` / `[::1]:port` / `name` -> (name, port or None); an unreadable port is -1."""
    value = value.strip()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, port = value.split(":")
    else:  # a bare name, or an IPv6 address without brackets (no port then)
        name, port = value, ""
    if not port:
        return _normal(name), None
    return _normal(name), int(port) if port.isdigit() else -1


class Guard:
    """ASGI middleware: refuses (403) a request from another site or to a name the server does not answer to, and
    adds the security headers to every answer."""

    def __init__(self, app, *, hosts: frozenset[str] | None, connection_address: bool = False):
        self.app, self.hosts, self.connection_address = app, hosts, connection_address
        self.any_host = hosts is not None and "*" in hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        why = self.refusal(scope)
        if why is not None:
            body = json.dumps({"detail": why}).encode()
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                    *DEFAULT_HEADERS]})
            await send({"type": "http.response.body", "body": body})
            return

        async def with_headers(message):
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", ())}
                message["headers"] = [*message.get("headers", ()), *((k, v) for k, v in DEFAULT_HEADERS if k not in present)]
            await send(message)

        await self.app(scope, receive, with_headers)

    def refusal(self, scope) -> str | None:
        """Why this request is refused, or None."""
        found = {}
        for key, value in scope.get("headers", ()):
            if key in (b"host", b"origin", b"sec-fetch-site", b"sec-fetch-mode"):
                found.setdefault(key, value.decode("latin-1"))
        host = found.get(b"host")
        name, port = split_host(host) if host else (None, None)
        if name is not None and not self._host_ok(name, scope):
            return (f"Host {host[:100]!r} is not a name this server answers to; start it with --allowed-host {name[:100]} "
                    "if clients reach it under that name")
        origin = found.get(b"origin")
        if origin is not None and not _same_origin(origin, name, port):
            return f"Origin {origin[:100]!r} is not this server's: requests from other web sites are refused"
        site = found.get(b"sec-fetch-site", "").lower()
        if site in ("cross-site", "same-site"):
            navigation = scope.get("method") in ("GET", "HEAD") and found.get(b"sec-fetch-mode", "").lower() == "navigate"
            if not navigation:
                return "a request from another web site (Sec-Fetch-Site: " + site + ") is refused"
        return None

    def _host_ok(self, name: str, scope) -> bool:
        if self.hosts is None or self.any_host or name in self.hosts:
            return True
        if self.connection_address:  # a wildcard bind: the address this connection was made to is a name of the server
            server = scope.get("server") or ()
            return bool(server) and _normal(str(server[0])) == name
        return False


def _same_origin(origin: str, host: str | None, port: int | None) -> bool:
    """Origin names the host the request was sent to (and its port, when Host has one)."""
    if host is None or origin.strip().lower() == "null":
        return False
    try:
        parts = urlsplit(origin.strip())
        origin_port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or _normal(parts.hostname or "") != host:
        return False
    if port is None:  # Host names no port (a default port, a proxy): the names match
        return True
    return (origin_port or {"http": 80, "https": 443}[parts.scheme]) == port


# --- the login cookie and its rate limit -------------------------------------------------------------------


def session_value(token: str) -> str:
    """What the login cookie holds: an HMAC of a fixed context under the token, never the token itself (a cookie
    that leaks does not give the token for the API; a new token ends every session)."""
    return hmac.new(token.encode("utf-8"), SESSION_CONTEXT, hashlib.sha256).hexdigest()


class LoginLimiter:
    """At most `failures` wrong tokens per client address in `window` seconds at /login; then 429 until the oldest
    failure is out of the window (a right token included: guessing stops, not just failing)."""

    def __init__(self, failures: int = 5, window: float = 60.0, clients: int = 10_000):
        self.failures, self.window, self.clients = failures, window, clients
        self._seen: dict[str, deque] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int | None:
        """Seconds to wait when `client` has used up its failures, else None."""
        now = time.monotonic()
        with self._lock:
            times = self._seen.get(client)
            if times is None:
                return None
            while times and now - times[0] > self.window:
                times.popleft()
            if len(times) < self.failures:
                return None
            return max(1, int(self.window - (now - times[0])) + 1)

    def failed(self, client: str) -> None:
        with self._lock:
            if client not in self._seen and len(self._seen) >= self.clients:
                self._seen.pop(next(iter(self._seen)))  # the oldest client: the table stays bounded
            self._seen.setdefault(client, deque()).append(time.monotonic())

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._seen.pop(client, None)

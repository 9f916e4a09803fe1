"""Who may call the server: client keys (a bearer token), or, with no keys configured, only this machine.

Without keys the server listens on loopback only, but a browser on this machine can still be made to call
it: a foreign page sending a "simple" request, or one whose domain was rebound to 127.0.0.1 (DNS rebinding).
So in that mode the ``Host`` header must name a loopback host and an ``Origin``, when sent, must be one.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
from collections.abc import Mapping
from urllib.parse import urlsplit

from starlette.responses import Response

from ._wire import error


def parse_keys(text: str) -> list[str]:
    """Client keys from a keys file's text (BOM already removed): one key per line; blank lines and ``#``
    comments (whole-line, or after whitespace at the end of a line) are skipped; CRLF is fine. A line left
    with whitespace inside is refused with ``ValueError("LINE: reason")``, never quoting the key."""
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        key = line.split(" #", 1)[0].split("\t#", 1)[0].strip()
        if not key or key.startswith("#"):
            continue
        if any(c.isspace() for c in key) or not key.isprintable():
            raise ValueError(f"{number}: a key must be one word (no spaces or control characters)")
        keys.append(key)
    return keys


def authorised(headers: Mapping[bytes, bytes], keys: tuple[str, ...]) -> bool:
    header = headers.get(b"authorization", b"").decode("latin-1")
    given = header[7:] if header[:7].lower() == "bearer " else ""
    # compare against every key, always, in constant time per key
    return any([hmac.compare_digest(given.encode(), k.encode()) for k in keys]) and bool(given)


@functools.lru_cache(maxsize=1024)  # a server sees a few Host values, parsed once each
def is_loopback_host(host: str) -> bool:
    """``localhost``, ``127.0.0.1:8000``, ``[::1]:8000``, ...: a name or address of this machine only."""
    host = host.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else ""
    elif host.count(":") == 1:
        host = host.split(":")[0]
    if host in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def guard(headers: Mapping[bytes, bytes], keys: tuple[str, ...]) -> Response | None:
    """None if the request may go on, else the error response: 401 without a valid key; in no-keys mode,
    403 for a ``Host`` or ``Origin`` that is not this machine. ``headers``: ``routes.request_headers``."""
    if keys:
        if authorised(headers, keys):
            return None
        return error(401, "invalid or missing API key", code="invalid_api_key")
    if not is_loopback_host(headers.get(b"host", b"").decode("latin-1")):
        return error(
            403,
            "without API keys this server answers only requests addressed to a loopback host",
            kind="permission_error",
            code="host_not_allowed",
        )
    origin = headers.get(b"origin")
    if origin is not None and not is_loopback_host(urlsplit(origin.decode("latin-1")).netloc):
        return error(
            403,
            "without API keys this server refuses requests from web pages of other origins",
            kind="permission_error",
            code="origin_not_allowed",
        )
    return None

"""The OpenAI wire format as the server reads and writes it: request bodies, error bodies, server-sent event
frames, the parameters the local model honours, and the upstream response headers a client must see."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from starlette.responses import JSONResponse

# the ``occ`` body field (stripped before forwarding)
CONTROL_FIELDS = frozenset({"compress", "preset", "rate", "frozen_messages"})

# upstream response headers relayed to the client, whatever the status: the SDKs' retry logic reads these
RELAYED_HEADERS = ("retry-after", "retry-after-ms")
RELAYED_PREFIX = "x-ratelimit-"


def error_body(
    message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error(
    status: int,
    message: str,
    kind: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A response in OpenAI's error shape."""
    return JSONResponse(error_body(message, kind, param, code), status_code=status, headers=headers)


def upstream_error(
    status: int, message: str, code: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return error(status, message, kind="upstream_error", code=code, headers=headers)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constants)  # made once: json.loads would make one per call


def parse_json(raw: bytes) -> Any:
    """JSON as RFC 8259 has it: ``NaN``, ``Infinity`` and ``-Infinity`` are refused (``ValueError``), since
    an upstream would refuse them too. Bytes in any encoding ``json.loads`` reads."""
    return _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))


def is_utf8_json(raw: bytes) -> bool:
    """Whether ``raw`` (JSON that ``parse_json`` read) is UTF-8 without a byte order mark, the only form
    RFC 8259 allows between systems: such bytes may be forwarded as they came, others are written anew."""
    if json.detect_encoding(raw) != "utf-8":
        return False
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:  # parse_json lets encoded surrogates through
        return False
    return True


def sse(data: dict[str, Any]) -> bytes:
    """One server-sent event carrying a JSON object."""
    return f"data: {json.dumps(data)}\n\n".encode()


SSE_DONE = b"data: [DONE]\n\n"


def sse_error(message: str, kind: str, code: str) -> bytes:
    """The end of a failed stream: an error event (the SDKs raise ``APIError`` on it), then ``[DONE]``.
    Written only where an event may start (see ``event_end``)."""
    return sse(error_body(message, kind, code=code)) + SSE_DONE


def event_end(buffer: bytes) -> int:
    """Where the last complete event in ``buffer`` ends (0 if none): events end with a blank line, in any
    of the three line endings the SSE format allows."""
    end = 0
    for separator in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        found = buffer.rfind(separator)
        if found >= 0:
            end = max(end, found + len(separator))
    return end


def ends_with_done(events: bytes) -> bool:
    """Whether the last event in ``events`` (complete events only) is ``data: [DONE]``."""
    last = re.split(rb"\r\n|\r|\n", events.rstrip(b"\r\n"))[-1]
    return last.replace(b" ", b"") == b"data:[DONE]"


_BEARER = re.compile(r"(?i)\bbearer\s+\S+")
_WORD = re.compile(r"[\w\-*.:/+=]+")
_KEY_PREFIX = re.compile(r"(?i)^(?:sk|pk|rk|ak|api|key|token|secret)[-_]|^AIza")
_RUN = re.compile(r"[A-Za-z0-9]{20,}")


def _key_like(word: str) -> bool:
    """A word that looks like a credential: a key prefix ("sk-...", masked ones too), or a run of 20+ letters
    and digits mixed (random-looking, not a word)."""
    if _KEY_PREFIX.match(word) and len(word) > 6:
        return True
    return any(any(c.isdigit() for c in run) and any(c.isalpha() for c in run) for run in _RUN.findall(word))


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with the given secrets, bearer tokens and anything that looks like a key replaced by
    ``[redacted]``: upstreams echo keys in their error messages (sometimes in full)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    text = _BEARER.sub("[redacted]", text)
    return _WORD.sub(lambda m: "[redacted]" if _key_like(m[0]) else m[0], text)


def header_value(value: str) -> str:
    """A header value: HTTP headers carry Latin-1 at most, so anything else is escaped."""
    return value.encode("ascii", "backslashreplace").decode("ascii")


def _number(low: float, high: float) -> Callable[[Any], bool]:
    return lambda v: (
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and low <= v <= high
    )


def _integer(low: int, high: float = math.inf) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _stop(value: Any) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, list) and len(value) <= 4 and all(isinstance(s, str) for s in value)


MAX_N = 8

# The OpenAI parameters the local model honours: what OpenAI accepts for each, and the llama.cpp argument
# it becomes (None: handled by the server, not passed). Every other field is passed through to upstreams
# untouched and ignored by the local model.
LOCAL_PARAMETERS: dict[str, tuple[Callable[[Any], bool], str, str | None]] = {
    "max_tokens": (_integer(1), "an integer >= 1", "max_tokens"),
    "max_completion_tokens": (_integer(1), "an integer >= 1", "max_tokens"),  # max_tokens wins
    "temperature": (_number(0, 2), "a number from 0 to 2", "temperature"),
    "top_p": (_number(0, 1), "a number from 0 to 1", "top_p"),
    "presence_penalty": (_number(-2, 2), "a number from -2 to 2", "presence_penalty"),
    "frequency_penalty": (_number(-2, 2), "a number from -2 to 2", "frequency_penalty"),
    "seed": (_integer(-(2**63)), "an integer", "seed"),
    "stop": (_stop, "a string or a list of at most 4 strings", "stop"),
    "n": (_integer(1, MAX_N), f"an integer from 1 to {MAX_N}", None),
}

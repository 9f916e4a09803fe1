"""The OpenAI wire format as the server writes it: error bodies and server-sent event frames."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse


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
) -> JSONResponse:
    """A response in OpenAI's error shape."""
    return JSONResponse(error_body(message, kind, param, code), status_code=status)


def sse(data: dict[str, Any]) -> bytes:
    """One server-sent event carrying a JSON object."""
    return f"data: {json.dumps(data)}\n\n".encode()


SSE_DONE = b"data: [DONE]\n\n"

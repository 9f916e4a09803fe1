"""The reference endpoint: OpenAI's POST /v1/chat/completions, compressing every prompt on the way.

Public: ``create_app``, ``Settings``, ``Route``, ``uvicorn_options``. A server feature goes in the module
whose job it is (one job each):

_wire.py        the OpenAI wire format: bodies, error bodies, SSE frames, the local model's parameters
_settings.py    settings from TOML and the environment, with one-line errors naming file and line
_auth.py        client keys; loopback Host and Origin without keys
_compression.py the presets offered; a request's compression within its time budget
_pool.py        the compression workers (processes): a bounded queue, deadlines, kill and replace
_worker.py      what runs in a compression worker: presets, the message memo, one compression
_relay.py       forwarding to an upstream, relaying its answer or stream, mapping its faults
_local.py       the in-process GGUF model as an upstream
_observe.py     Prometheus metrics and the access log
_protocol.py    uvicorn's HTTP protocols (h11, httptools) with header timeout and size limit
_routes.py      the HTTP routes
_state.py       what the app holds while it runs
_app.py         the app factory, its lifespan, the hot route's shortcut past Starlette's layers
"""

from ..exceptions import SettingsError
from ._app import create_app
from ._protocol import uvicorn_options
from ._settings import Route, Settings

__all__ = ["Route", "Settings", "SettingsError", "create_app", "uvicorn_options"]

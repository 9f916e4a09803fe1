"""The reference endpoint: OpenAI's POST /v1/chat/completions, compressing every prompt on the way.

wire.py         the OpenAI wire format: bodies, error bodies, SSE frames, the local model's parameters
settings.py     settings from TOML and the environment, with one-line errors naming file and line
auth.py         client keys; loopback Host and Origin without keys
compression.py  the presets offered; compression off the event loop within a time budget
relay.py        forwarding to an upstream, relaying its answer or stream, mapping its faults
local.py        the in-process GGUF model as an upstream
observe.py      Prometheus metrics and the access log
protocol.py     uvicorn's HTTP protocol with a header timeout (slow clients)
routes.py       the HTTP routes
state.py        what the app holds while it runs
app.py          the app factory and its lifespan
"""

from ..exceptions import SettingsError
from ._app import create_app
from ._protocol import uvicorn_options
from ._settings import Route, Settings

__all__ = ["Route", "Settings", "SettingsError", "create_app", "uvicorn_options"]

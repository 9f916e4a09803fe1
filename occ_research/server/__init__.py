"""The reference endpoint: OpenAI's POST /v1/chat/completions, compressing every prompt on the way."""

from .app import create_app
from .settings import Route, Settings

__all__ = ["Route", "Settings", "create_app"]

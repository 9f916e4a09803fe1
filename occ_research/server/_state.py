"""What the app holds while it runs (built by the lifespan in ``app.py``, read by the routes)."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

from ._compression import Presets
from ._local import LocalUpstream
from ._observe import Metrics
from ._pool import CompressionPool
from ._settings import Settings


@dataclass(frozen=True)
class ServerState:
    settings: Settings
    presets: Presets
    client: aiohttp.ClientSession  # one session for every upstream: pooled connections
    local: LocalUpstream
    pool: CompressionPool  # the compression workers
    metrics: Metrics

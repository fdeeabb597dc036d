"""Typed application keys: everything the composition root puts on the aiohttp app."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import web

from bot.config import Settings
from bot.ingest import IngestRoutes
from bot.pipeline import Pipeline
from bot.platforms.base import PlatformAdapter
from bot.redis import Keys, Redis

SETTINGS = web.AppKey("settings", Settings)
REDIS = web.AppKey("redis", Redis)
KEYS = web.AppKey("keys", Keys)
HTTP = web.AppKey("http", aiohttp.ClientSession)
ADAPTERS = web.AppKey("adapters", Mapping[str, PlatformAdapter])  # by account id
INGEST = web.AppKey("ingest", IngestRoutes)
PIPELINE = web.AppKey("pipeline", Pipeline)
ROLE = web.AppKey("role", str)
# Subsystems (NLU service, ticket store, ...) registered by name for health checks.
SERVICES = web.AppKey("services", dict[str, Any])

"""The HTTP layer: an aiohttp application serving docs/api.md over redroute.Engine."""

from ..settings import Settings
from .app import create_app

__all__ = ["Settings", "create_app"]

"""The HTTP layer: an aiohttp application serving API.md over redroute.Engine."""

from .app import Settings, create_app

__all__ = ["Settings", "create_app"]

"""The HTTP layer: an aiohttp application serving docs/api.md over redroute.Engine."""

from .app import Settings, create_app

__all__ = ["Settings", "create_app"]

"""GET /wallboard: the live wallboard, one self-contained page (wallboard.html
beside this module, shipped in the wheel) with its style and script inline.

The page holds no data, so it is served without an API key; its script
reads the statistics and the event stream with the key the user types,
sent in the Authorization header only. The Content-Security-Policy allows
exactly the page's own style and script (by hash) and requests to this
server, nothing else.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from importlib import resources

from aiohttp import web

_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@functools.cache
def page() -> tuple[bytes, str]:
    """The page and its Content-Security-Policy."""
    html = resources.files(__package__).joinpath("wallboard.html").read_text(encoding="utf-8")
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for m in _INLINE.finditer(html):
        hashes[m.group(1)].append(_sha256(m.group(2)))
    csp = "; ".join([
        "default-src 'none'",
        "script-src " + " ".join(hashes["script"]),
        "style-src " + " ".join(hashes["style"]),
        "connect-src 'self'",
        "img-src data:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ])
    return html.encode(), csp


async def wallboard(request: web.Request) -> web.Response:
    body, csp = page()
    return web.Response(body=body, content_type="text/html", charset="utf-8", headers={
        "Content-Security-Policy": csp,
        "Cache-Control": "no-cache",
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    })

"""README.md's signature check accepts redroute's deliveries as they
arrive at a real receiver, and refuses a changed body, another secret and
an old timestamp."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from redroute import Engine
from tests.support.receiver import Receiver
from tests.support.webhooks import contact_center, dispatching

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_verify() -> Any:
    text = README.read_text()
    section = text[text.index("<!-- webhooks:start -->"):text.index("<!-- webhooks:end -->")]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    scope: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - the README's own snippet
    return scope["verify_redroute"]


async def test_the_readme_snippet_verifies_real_deliveries(engine: Engine):
    verify = readme_verify()
    receiver = await Receiver().start()
    try:
        await engine.put_webhook("wh-1", url=f"{receiver.base}/in", secret="readme-secret",
                                 allow_private=True)
        async with dispatching(engine):
            await contact_center(engine)
            await engine.push_task("c-1", "sales")
            await receiver.wait_for(lambda: len(receiver.received) >= 1)
    finally:
        await receiver.stop()
    r = receiver.received[0]
    assert verify("readme-secret", r.headers, r.body)
    assert not verify("readme-secret", r.headers, r.body + b" ")
    assert not verify("another-secret", r.headers, r.body)
    old = {**r.headers, "X-Redroute-Timestamp": str(int(r.headers["X-Redroute-Timestamp"]) - 600_000)}
    assert not verify("readme-secret", old, r.body)

"""The webhook objects of docs/api.md, Webhooks, and the delivery settings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..model import Page

DAY_MS = 24 * 3600 * 1000
GROUP = "webhooks"  # the consumer group of every dispatcher, on each tenant's stream


class DeliveryStatus(StrEnum):
    PENDING = "PENDING"  # an attempt is due, scheduled or in flight
    FAILED = "FAILED"  # retried for the give-up period, or its event was lost; kept


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    url: str
    types: list[str] | None
    queue_ids: list[str] | None
    enabled: bool
    created_at: int
    updated_at: int
    pending: int = 0
    failed: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Webhook:
        counts = d.get("deliveries") or {}
        return cls(d["id"], d["url"], d.get("types"), d.get("queueIds"), bool(d["enabled"]),
                   int(d["createdAt"]), int(d["updatedAt"]), int(counts.get("pending", 0)),
                   int(counts.get("failed", 0)))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "types": self.types, "queueIds": self.queue_ids,
                "enabled": self.enabled, "createdAt": self.created_at,
                "updatedAt": self.updated_at,
                "deliveries": {"pending": self.pending, "failed": self.failed}}


@dataclass(frozen=True, slots=True)
class Delivery:
    """One (webhook, event). Its id is the event's stream id, or for events
    trimmed before the dispatcher read them, `gap-<after>-<before>`."""

    id: str
    webhook_id: str
    event_id: str | None
    type: str | None
    status: DeliveryStatus
    attempts: int
    created_at: int
    last_attempt_at: int | None = None
    next_attempt_at: int | None = None
    failed_at: int | None = None
    last_status: int | None = None
    last_error: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Delivery:
        return cls(d["id"], d["webhookId"], d.get("eventId"), d.get("type"),
                   DeliveryStatus(d["status"]), int(d["attempts"]), int(d["createdAt"]),
                   d.get("lastAttemptAt"), d.get("nextAttemptAt"), d.get("failedAt"),
                   d.get("lastStatus"), d.get("lastError"))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "webhookId": self.webhook_id, "eventId": self.event_id,
                "type": self.type, "status": self.status.value, "attempts": self.attempts,
                "createdAt": self.created_at, "lastAttemptAt": self.last_attempt_at,
                "nextAttemptAt": self.next_attempt_at, "failedAt": self.failed_at,
                "lastStatus": self.last_status, "lastError": self.last_error}


def webhook_page(raw: str) -> Page[Webhook]:
    d = json.loads(raw)
    return Page([Webhook.from_dict(w) for w in d["webhooks"]], d["next"])


def delivery_page(raw: str) -> Page[Delivery]:
    d = json.loads(raw)
    return Page([Delivery.from_dict(x) for x in d["deliveries"]], d["next"])


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """How a dispatcher delivers. The defaults are the contract's; tests
    shorten them."""

    attempt_timeout: float = 10.0  # seconds without a complete answer: a failed attempt
    backoff_ms: int = 1000  # before the first retry; doubles per attempt
    max_backoff_ms: int = 5 * 60 * 1000
    give_up_ms: int = DAY_MS  # then the delivery is kept as FAILED
    per_webhook: int = 8  # attempts in flight per webhook, per dispatcher
    in_flight: int = 256  # attempts in flight per dispatcher
    max_response_bytes: int = 64 * 1024  # read of an answer's body, then dropped
    allow_private: bool = False  # loopback, private, link-local targets (operator's choice)
    poll_interval: float = 1.0  # longest sleep between claims of due retries, seconds
    claim_idle_ms: int = 30_000  # a dead dispatcher's unread events are taken over after this

    @property
    def lease_ms(self) -> int:
        """How long a claimed attempt is its dispatcher's alone: longer
        than an attempt can take."""
        return int(self.attempt_timeout * 1000) + 5000

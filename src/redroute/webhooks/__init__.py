"""Webhooks: a tenant's events POSTed, signed, to the URLs it registers,
at least once (docs/api.md, Webhooks; docs/design.md, Webhooks)."""

from .model import Delivery, DeliverySettings, DeliveryStatus, Webhook
from .signing import sign, verify

__all__ = ["Delivery", "DeliverySettings", "DeliveryStatus", "Webhook", "sign", "verify"]

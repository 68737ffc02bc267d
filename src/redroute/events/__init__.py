"""Events: their model (model.py), reading a tenant's stream without skipping
what retention cut (stream.py), and consumer groups (consumer.py)."""

from .model import Event, decode_entries, decode_entry

__all__ = ["Event", "decode_entries", "decode_entry"]

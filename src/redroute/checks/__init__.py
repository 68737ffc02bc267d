"""Checks of a tenant's state in Redis: the invariants (invariants.py) and
the state rebuilt from the event stream compared with it (projection.py)."""

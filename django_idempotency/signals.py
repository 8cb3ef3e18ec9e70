"""Signals for feeding a project's own metrics. Each is sent with ``sender=IdempotencyRecord``.

- ``response_stored(operation, record_id, status)``: a first request's response was stored
  (sent after the transaction commits).
- ``response_replayed(operation, record)``: a stored response was replayed.
- ``request_conflicted(operation, record, kind)``: a request was refused; ``kind`` is one of
  ``"mismatch"``, ``"in_flight"``, ``"reference"``; ``record`` is ``None`` for ``"in_flight"``.
"""

from django.dispatch import Signal

response_stored = Signal()
response_replayed = Signal()
request_conflicted = Signal()

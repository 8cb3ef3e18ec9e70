"""Exactly-once POSTs for Django and DRF, backed by the project's own database."""

__version__ = "0.1.0.dev0"

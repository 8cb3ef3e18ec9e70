"""The benchmark harness: variants, clients, measurements and the report (see ../run.py)."""

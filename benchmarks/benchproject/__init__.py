"""The benchmark's Django project: one model, one create endpoint, wrapped once per package."""

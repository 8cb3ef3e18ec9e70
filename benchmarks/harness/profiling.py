"""Where the time of a first request and of a replay goes, from a pyinstrument profile."""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from pyinstrument import Profiler
from pyinstrument.frame import Frame

from .clients import InProcess
from .measure import FIRST, REPLAY
from .variants import Variant, order_body

# Sampling every 500 us: a few samples per request, thousands over the run, and little enough
# overhead that the profiler does not reshape what it measures (100 us doubled the run time).
INTERVAL = 0.0005
DATABASE_AREAS = ("psycopg (and waiting for PostgreSQL)", "Django ORM and db backend")


@dataclass(frozen=True)
class Hotspot:
    name: str
    ms_per_request: float
    database_ms_per_request: float


@dataclass(frozen=True)
class ProfileReport:
    mode: str
    requests: int
    ms_per_request: float
    cpu_ms_per_request: float
    areas: list[tuple[str, float]]  # (area, ms of self time per request), largest first
    ours: list[Hotspot]  # django_idempotency functions, inclusive time, largest first
    landmarks: list[Hotspot]  # the view's own create, authentication, rendering
    text_path: Path


def area(file_path: str | None) -> str:
    path = (file_path or "").replace("\\", "/")
    if "/django_idempotency/" in path:
        return "django_idempotency"
    if "/psycopg" in path:
        return DATABASE_AREAS[0]
    if "/django/db/" in path:
        return DATABASE_AREAS[1]
    if "/rest_framework/" in path:
        return "DRF"
    if "/django/test/" in path:
        return "Django test client (in-process only)"
    if "/django/" in path:
        return "Django (handler, middleware, http, signals)"
    if "/benchproject/" in path or "/harness/" in path:
        return "benchmark code"
    return "Python stdlib and other"


# The landmarks' inclusive time shows what Django and DRF spend on their own.
LANDMARKS = {
    ("mixins.py", "create"): "DRF CreateModelMixin.create (the view's business create)",
    ("views.py", "perform_authentication"): "DRF perform_authentication (token lookup)",
    ("response.py", "rendered_content"): "DRF Response.rendered_content (JSON rendering)",
    ("base.py", "get_response"): "Django BaseHandler.get_response (whole request)",
}


_FRAMEWORK_DIRS = ("/rest_framework/", "/django/core/handlers/")


def profile_mode(
    client: InProcess, variant: Variant, mode: str, requests: int, out_dir: Path
) -> ProfileReport:
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    prepared: list[tuple[str, bytes]] = []
    if mode == REPLAY:
        for index in range(requests):
            key, body = variant.new_key(), order_body(f"profile-replay-{index}")
            client.post(variant.path, body, key)
            prepared.append((key, body))
    else:
        assert mode == FIRST
        prepared = [(variant.new_key(), order_body(f"profile-first-{i}")) for i in range(requests)]
    # Warm every code path outside the profile.
    for _ in range(20):
        client.post(variant.path, order_body("profile-warm"), variant.new_key())

    profiler = Profiler(interval=INTERVAL)
    profiler.start()
    for key, body in prepared:
        client.post(variant.path, body, key)
    session = profiler.stop()

    out_dir.mkdir(parents=True, exist_ok=True)
    text_path = out_dir / f"profile-{variant.slug}-{mode}.txt"
    text_path.write_text(profiler.output_text(unicode=False, color=False, show_all=True))

    root = session.root_frame(trim_stem=False)
    assert root is not None
    return _analyse(root, mode, requests, session.cpu_time, text_path)


def _analyse(
    root: Frame, mode: str, requests: int, cpu_time: float, text_path: Path
) -> ProfileReport:
    per_request = 1000.0 / requests
    areas: dict[str, float] = defaultdict(float)
    database_in: dict[int, float] = {}

    def database_time(frame: Frame) -> float:
        """Self time spent in psycopg or Django's db layer anywhere below ``frame``."""
        own = 0.0
        if not frame.is_synthetic and area(frame.file_path) in DATABASE_AREAS:
            own = frame.total_self_time
        total = own + sum(database_time(child) for child in frame.children)
        database_in[id(frame)] = total
        return total

    database_time(root)

    ours: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    landmarks: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])

    def walk(frame: Frame, open_keys: frozenset[str]) -> None:
        if frame.is_synthetic:
            return
        areas[area(frame.file_path)] += frame.total_self_time
        keys = open_keys
        name = _name(frame)
        file_name = Path(frame.file_path or "").name
        landmark = LANDMARKS.get((file_name, frame.function))
        in_framework = any(part in (frame.file_path or "") for part in _FRAMEWORK_DIRS)
        if landmark and in_framework and landmark not in keys:
            landmarks[landmark][0] += frame.time
            landmarks[landmark][1] += database_in[id(frame)]
            keys = keys | {landmark}
        if area(frame.file_path) == "django_idempotency" and name not in keys:
            ours[name][0] += frame.time
            ours[name][1] += database_in[id(frame)]
            keys = keys | {name}
        for child in frame.children:
            walk(child, keys)

    walk(root, frozenset())
    total = sum(areas.values())
    return ProfileReport(
        mode=mode,
        requests=requests,
        ms_per_request=total * per_request,
        cpu_ms_per_request=cpu_time * per_request,
        areas=sorted(((k, v * per_request) for k, v in areas.items()), key=lambda i: -i[1]),
        ours=_hotspots(ours, per_request),
        landmarks=_hotspots(landmarks, per_request),
        text_path=text_path,
    )


def _hotspots(found: dict[str, list[float]], per_request: float) -> list[Hotspot]:
    spots = [Hotspot(name, t * per_request, db * per_request) for name, (t, db) in found.items()]
    return sorted(spots, key=lambda spot: -spot.ms_per_request)


def _name(frame: Frame) -> str:
    module = Path(frame.file_path or "?").stem
    owner = f"{frame.class_name}." if frame.class_name else ""
    return f"{module}.{owner}{frame.function}"

"""The engine's one hook for metrics and traces: observers told what each operation did.

An observer is any object with the methods of ``Observer``; the engine calls them and imports
no metrics library. The adapters (``django_idempotency.metrics``) are loaded by name from
``IDEMPOTENCY_METRICS``; with none set, ``watch()`` answers the shared ``OFF`` watch, whose
methods do nothing. The setting is read once, and again when it changes (``override_settings``):
reading a Django setting that is not set raises and catches an AttributeError, which costs
more than the rest of the hook (benchmarks/metrics.py).

An observer that fails (raises, or its span swallows the phase's exception) is logged and
ignored: telemetry never changes an answer, undoes a stored response or stops a purge.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from django.core.signals import setting_changed
from django.utils.module_loading import import_string

from ..conf import METRICS_EXPORTERS, app_settings
from .operation import Operation

logger = logging.getLogger(__name__)

#: What one operation ends in, as every observer names it.
OUTCOMES = ("stored", "replayed", "released", "mismatch", "reference_conflict", "in_flight")
#: The engine's phases, each a span (a child of the request's span, if any).
SPANS = ("claim", "view", "store", "replay")
#: The operators' gauges, set at the end of each purge and relay pass (``report_backlog``).
BACKLOG = (
    "purge_lag_seconds",
    "purge_backlog_records",
    "purge_last_pass_timestamp_seconds",
    "outbox_backlog_messages",
    "outbox_oldest_age_seconds",
    "outbox_parked_messages",
    "outbox_last_pass_timestamp_seconds",
)


@dataclass(frozen=True)
class Labels:
    """What a measurement is labelled with: both bounded, neither names a client.

    ``scope`` is the operation's endpoint: its scope up to the ``|`` that HTTP doors put
    before the principal (``payment-list`` of ``payment-list|user:7``), a task's
    ``celery:<name>``, a ``once`` call's scope. A scope too long to store is stored as its
    digest, principal included: its label is ``sha256``, one value for all of them.
    """

    door: str
    scope: str

    @classmethod
    def of(cls, operation: Operation) -> Labels:
        endpoint = operation.scope.partition("|")[0]
        if endpoint.startswith("sha256:"):
            endpoint = "sha256"
        return cls(door=operation.door, scope=endpoint)


class Observer(Protocol):
    """What the engine, the purge and the relay tell an observer."""

    def span(self, name: str, labels: Labels) -> AbstractContextManager[object]:
        """A context around one phase (``SPANS``) of an operation."""

    def outcome(self, name: str, labels: Labels) -> None:
        """An operation ended in ``name`` (``OUTCOMES``)."""

    def waited(self, labels: Labels, seconds: float) -> None:
        """A claim waited ``seconds`` behind a copy of its request in flight."""

    def backlog(self, database: str, values: Mapping[str, float]) -> None:
        """The purge's or the relay's gauges (names from ``BACKLOG``), after a pass."""


_NO_SPAN: AbstractContextManager[object] = nullcontext()


class Watch:
    """One operation's observers with its labels; ``OFF`` when there are none."""

    __slots__ = ("labels", "observers")

    def __init__(self, observers: tuple[Observer, ...], labels: Labels | None) -> None:
        self.observers = observers
        self.labels = labels

    def __bool__(self) -> bool:
        return bool(self.observers)

    def span(self, name: str) -> AbstractContextManager[object]:
        if not self.observers or self.labels is None:
            return _NO_SPAN
        return _Spans(self.observers, name, self.labels)

    def outcome(self, name: str) -> None:
        if self.labels is not None:
            for observer in self.observers:
                _safely(observer.outcome, name, self.labels)

    def waited(self, seconds: float) -> None:
        if self.labels is not None:
            for observer in self.observers:
                _safely(observer.waited, self.labels, seconds)


OFF = Watch((), None)


def watch(operation: Operation) -> Watch:
    """The observers of ``operation``: ``OFF`` unless ``IDEMPOTENCY_METRICS`` names some."""
    active = observers()
    if not active:
        return OFF
    return Watch(active, Labels.of(operation))


def report_backlog(database: str, values: Mapping[str, float]) -> None:
    for observer in observers():
        _safely(observer.backlog, database, values)


#: Each observer made once per process, whatever lists name it: OpenTelemetry keeps the first
#: instrument of a name, so a second adapter's gauges would never be read. ``None``: it failed.
_built: dict[str, Observer | None] = {}
_building = threading.Lock()
#: The observers of the setting's current value; ``None``: not read since it last changed.
_current: tuple[Observer, ...] | None = None


def observers() -> tuple[Observer, ...]:
    """The observers ``IDEMPOTENCY_METRICS`` names, looked up once per value of the setting."""
    global _current
    current = _current
    if current is not None:
        return current
    with _building:  # and _forget: a change while this reads is never overwritten by it
        names = _names()
        for name in names:
            if name not in _built:
                _built[name] = _build(name)
        current = _current = tuple(
            observer for name in names if (observer := _built[name]) is not None
        )
    return current


def _names() -> tuple[str, ...]:
    try:
        return app_settings.METRICS
    except TypeError:  # a string: check E002 says so, but gunicorn runs no checks
        logger.exception("IDEMPOTENCY_METRICS is not a list; nothing is measured.")
        return ()


def _forget(*, setting: str, **kwargs: object) -> None:
    global _current
    if setting == "IDEMPOTENCY_METRICS":
        with _building:
            _current = None


setting_changed.connect(_forget)


def _build(name: str) -> Observer | None:
    """The observer ``name`` names; ``None`` (logged) if it cannot be made: check E026 stops
    a project whose exporter is missing, but gunicorn runs no checks, and every operation
    failing for want of its metrics would be worse than none."""
    path = METRICS_EXPORTERS[name][0] if name in METRICS_EXPORTERS else name
    try:
        observer: Observer = import_string(path)()
    except Exception:
        logger.exception("IDEMPOTENCY_METRICS: the observer %r cannot be made; ignored.", name)
        return None
    return observer


def _safely(method: Any, *args: object) -> None:
    try:
        method(*args)
    except Exception:
        logger.exception("An idempotency observer failed in %s; ignored.", method)


class _Spans:
    """The observers' spans of one phase, each entered and left under ``_safely``'s rule, and
    never allowed to swallow the phase's own exception (a context manager may)."""

    __slots__ = ("entered", "labels", "name", "observers")

    def __init__(self, observers: tuple[Observer, ...], name: str, labels: Labels) -> None:
        self.observers = observers
        self.name = name
        self.labels = labels
        self.entered: list[AbstractContextManager[object]] = []

    def __enter__(self) -> None:
        for observer in self.observers:
            try:
                span = observer.span(self.name, self.labels)
                span.__enter__()
            except Exception:
                logger.exception("An idempotency observer's %r span failed; ignored.", self.name)
            else:
                self.entered.append(span)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        while self.entered:
            span = self.entered.pop()
            try:
                span.__exit__(kind, error, trace)
            except Exception:
                logger.exception("An idempotency observer's %r span failed; ignored.", self.name)
        # None: the phase's exception, if any, goes on, whatever the spans answered.

"""Loading a found record (``store._record_from_row``): the converters it keeps per connection
do not keep the connection alive after its thread is gone, nor outlive a change of USE_TZ."""

from __future__ import annotations

import gc
import threading
import weakref
from datetime import timedelta

import pytest
from django.db import connections
from django.http import HttpResponse
from django.test import override_settings

from django_idempotency.core.engine import perform_once
from django_idempotency.core.operation import Operation

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_threads_connection_is_freed_after_it_loaded_a_record() -> None:
    """On MariaDB and SQLite a converter is a method of the connection's own operations."""
    operation = Operation(
        database="default",
        scope="probe|auth.user:1",
        key="k",
        fingerprint="f" * 64,
        method="POST",
        path="/p/",
        reference=None,
        ttl=timedelta(hours=1),
        lock_timeout=5.0,
    )
    seen: list[weakref.ref[object]] = []

    def request() -> None:
        for _ in range(2):  # the second one finds the record the first stored
            perform_once(operation, lambda: HttpResponse(status=201))
        connection = connections["default"]
        seen.append(weakref.ref(connection))
        if connection.vendor == "sqlite" and connection.is_in_memory_db():
            # Django ignores close() on an in-memory database (the main thread's connection keeps
            # the shared one alive); left open, Python 3.13 warns when it is collected.
            connection.connection.close()
        connection.close()

    worker = threading.Thread(target=request)
    worker.start()
    worker.join()
    gc.collect()
    assert seen[0]() is None


def test_a_record_loaded_after_use_tz_changed_is_converted_for_the_new_setting() -> None:
    """MySQL's and SQLite's datetime converters depend on USE_TZ (override_settings in a test)."""

    def replay(key: str) -> int:
        operation = Operation(
            database="default",
            scope="probe|auth.user:1",
            key=key,
            fingerprint="f" * 64,
            method="POST",
            path="/p/",
            reference=None,
            ttl=timedelta(hours=1),
            lock_timeout=5.0,
        )
        for _ in range(2):
            status = perform_once(operation, lambda: HttpResponse(status=201)).status_code
        return status

    assert replay("aware") == 201
    with override_settings(USE_TZ=False):
        assert replay("naive") == 201

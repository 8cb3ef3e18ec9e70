"""Test-only endpoints that misbehave on request: slow, failing, streaming, huge."""

import json
import threading
import time
from datetime import timedelta
from typing import Any

from django.db import connection
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from rest_framework import status, viewsets
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response

from django_idempotency.drf import IdempotentCreateMixin

from .models import Execution, OtherDatabaseExecution


class Teapot(APIException):
    status_code = 418
    default_code = "teapot"
    default_detail = "I'm a teapot."


def _encodable(value: Any) -> Any:
    """``value``, or its ASCII repr if it holds a lone surrogate: valid in a JSON escape, but
    neither DRF's UTF-8 rendering nor the database can carry it."""
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return ascii(value)
    return value


class Gate:
    """Holds a request inside the view, with its key claimed, for as long as a test needs:
    the test waits until the request is ``inside()``, sends what must find it in flight, then
    lets it go (``open()``). An order between threads without a pause that guesses at it."""

    TIMEOUT = 30.0

    def __init__(self) -> None:
        self._inside = threading.Event()
        self._open = threading.Event()

    def hold(self) -> None:
        self._inside.set()
        if not self._open.wait(self.TIMEOUT):
            raise TimeoutError("the test never opened the gate")

    def inside(self) -> None:
        if not self._inside.wait(self.TIMEOUT):
            raise TimeoutError("no request reached the gate")

    def open(self) -> None:
        self._open.set()


#: The gates a probe request names in ``"gate"`` (the ``gate`` fixture registers one).
GATES: dict[str, Gate] = {}


class ProbeCreate:
    """``create()`` driven by the JSON body: ``label``, ``sleep``, ``gate``, ``status``, ...

    ``headers`` (an object) adds response headers verbatim and ``cookie`` sets a cookie, so the
    tests can see which headers a replay carries.
    """

    def create(self, request: Request, *args, **kwargs) -> Response | StreamingHttpResponse:  # type: ignore[no-untyped-def]
        # A JSON body that is not an object drives nothing (the fuzz tests send any JSON).
        data = request.data if hasattr(request.data, "get") else {}
        # Through the view's model, so a routed proxy writes to its own database.
        label = _encodable(data.get("label"))  # the fuzz tests send "\ud800" too
        # A text column holds no NUL and 200 characters: the probe's own limits, not the package's.
        stored = str(label).replace("\x00", "\\x00")[:200] if "label" in data else ""
        self.get_queryset().model.objects.create(label=stored)  # type: ignore[attr-defined]
        time.sleep(float(data.get("sleep", 0)))
        if "gate" in data:
            GATES[data["gate"]].hold()
        raised = data.get("raise")
        if raised == "validation":
            raise ValidationError({"label": ["bad label"]})
        if raised == "teapot":
            raise Teapot()
        if raised == "crash":
            raise RuntimeError("boom")
        if data.get("stream"):
            return StreamingHttpResponse(iter([b"a", b"b"]))
        body = {"label": label, "pad": "x" * int(data.get("size", 0))}
        if data.get("report_atomic_depth"):
            # How many atomic blocks wrap the view: ATOMIC_REQUESTS adds the outermost one.
            body["atomic_depth"] = len(connection.atomic_blocks)
            # And the savepoints it runs in: the engine gives the view one of its own.
            body["savepoints"] = len(connection.savepoint_ids)
        if data.get("report_lock_timeout"):
            with connection.cursor() as cursor:
                if connection.vendor == "mysql":
                    cursor.execute("SELECT @@SESSION.innodb_lock_wait_timeout")
                else:
                    cursor.execute("SHOW lock_timeout")
                body["lock_timeout"] = cursor.fetchone()[0]
        response = Response(
            body,
            status=int(data.get("status", status.HTTP_201_CREATED)),
            headers={"ETag": '"v1"', "X-Not-Replayed": "1", **data.get("headers", {})},
        )
        if data.get("cookie"):
            response.set_cookie("probe", str(data["cookie"]))
        return response


class ProbeViewSet(IdempotentCreateMixin, ProbeCreate, viewsets.GenericViewSet):
    queryset = Execution.objects.all()
    idempotency_reference_field = "ref"


class OptionalProbeViewSet(ProbeViewSet):
    idempotency_key_required = False


class AnonymousProbeViewSet(ProbeViewSet):
    """Open to anonymous clients, so the mixin (not DRF's permissions) answers them."""

    permission_classes = [AllowAny]
    authentication_classes = []


class OptionalAnonymousProbeViewSet(AnonymousProbeViewSet):
    idempotency_key_required = False


class ShortTtlProbeViewSet(ProbeViewSet):
    idempotency_ttl = timedelta(milliseconds=500)


class OtherDatabaseProbeViewSet(ProbeViewSet):
    """Writes to the ``other`` alias (see tests/routers.py): the record must live there too."""

    queryset = OtherDatabaseExecution.objects.all()


class OverriddenQuerysetProbeViewSet(ProbeViewSet):
    """``queryset`` names a model on ``default``; ``get_queryset()`` (it wins) one on ``other``:
    the record's database is then named explicitly, as ``get_queryset()`` is never called."""

    idempotency_database = "other"

    def get_queryset(self) -> QuerySet[OtherDatabaseExecution]:
        return OtherDatabaseExecution.objects.all()

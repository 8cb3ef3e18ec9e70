"""The one HTTP policy (``core.policy.HttpPolicy``): the same options, hooks and rules on the
DRF, plain-Django and ninja doors."""

from __future__ import annotations

import ast
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from django.test import Client, RequestFactory
from rest_framework.authtoken.models import Token
from rest_framework.request import Request

import django_idempotency
from django_idempotency.drf import IdempotentAPIViewMixin
from django_idempotency.models import IdempotencyRecord
from django_idempotency.views import make_policy
from tests.testapp.models import Execution


def logged_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def post_json(client: Client, path: str, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(path, json.dumps(body), content_type="application/json", **headers)


def door_client(door: str, user: Any) -> Client:
    if door == "ninja":
        token, _ = Token.objects.get_or_create(user=user)
        return Client(HTTP_AUTHORIZATION=f"Bearer {token.key}")
    return logged_in(user)


DOOR_PREFIX = {"plain": "/test/doors/", "ninja": "/test/doors/ninja/"}


@pytest.mark.django_db
@pytest.mark.parametrize("door", ["plain", "ninja"])
def test_reference_url_kwarg_names_one_order_whatever_its_spelling(
    door: str, user: Any, assert_problem: Any
) -> None:
    client = door_client(door, user)
    first = post_json(client, f"{DOOR_PREFIX[door]}orders/01/pay/", {}, key="a")
    again = post_json(client, f"{DOOR_PREFIX[door]}orders/1/pay/", {}, key="b")

    assert first.status_code == 201, first.content
    assert_problem(again, 409, "idempotency-reference-conflict")
    assert Execution.objects.count() == 1
    # ``lock_timeout`` reaches the engine: how long a copy would wait for this original.
    assert first.json()["lock_timeout"] == 0.25


@pytest.mark.django_db(databases=["default", "other"], transaction=True)
@pytest.mark.parametrize("door", ["plain", "ninja"])
def test_the_database_option_puts_the_record_beside_the_views_rows(door: str, user: Any) -> None:
    client = door_client(door, user)
    first = post_json(client, f"{DOOR_PREFIX[door]}other-database/", {}, key="k")
    replay = post_json(client, f"{DOOR_PREFIX[door]}other-database/", {}, key="k")

    assert first.status_code == 201, first.content
    assert replay["Idempotent-Replayed"] == "true"
    assert IdempotencyRecord.objects.using("other").count() == 1
    assert not IdempotencyRecord.objects.using("default").exists()


def test_the_model_option_is_a_deprecated_alias_of_database() -> None:
    with pytest.warns(DeprecationWarning, match="'model' option is deprecated: use 'database'"):
        policy = make_policy({"model": Execution})
    assert policy.get_idempotency_database() == "default"  # the router's answer for it
    assert make_policy({"database": "other"}).get_idempotency_database() == "other"


@pytest.mark.django_db
def test_get_idempotency_key_answers_the_key_on_every_door(user: Any) -> None:
    """One hook, one type: the key as a string (the plain door answered a tuple before)."""
    request = RequestFactory().post("/", HTTP_IDEMPOTENCY_KEY='"abc"')
    request.user = user
    drf_request = Request(request)
    drf_request.user = user

    assert make_policy({}).get_idempotency_key(request) == "abc"
    assert IdempotentAPIViewMixin().get_idempotency_key(drf_request) == "abc"
    assert make_policy({}).get_idempotency_ttl() == IdempotentAPIViewMixin().get_idempotency_ttl()


def test_the_drf_mixins_old_name_still_imports_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="use IdempotentAPIViewMixin"):
        from django_idempotency.drf import IdempotentViewMixin
    assert IdempotentViewMixin is IdempotentAPIViewMixin


def test_no_class_name_is_defined_twice_in_the_package() -> None:
    """Public names do not clash: ``IdempotentViewMixin`` is the plain-Django door's only.
    (Django's ``Command`` and ``Migration`` classes are named by convention.)"""
    package = Path(django_idempotency.__file__).parent
    defined: dict[str, list[str]] = defaultdict(list)
    for path in package.rglob("*.py"):
        if {"migrations", "commands"} & set(path.parts):
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef):
                defined[node.name].append(str(path.relative_to(package)))
    assert {name: paths for name, paths in defined.items() if len(paths) > 1} == {}

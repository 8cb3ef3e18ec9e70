"""The one HTTP policy (``core.policy.HttpPolicy``): the same options, hooks and rules on the
DRF, plain-Django and ninja doors."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

import django_idempotency
from django_idempotency.models import IdempotencyRecord
from django_idempotency.views import make_policy
from tests.ninja.test_ninja import bearer
from tests.testapp.models import Execution
from tests.views.test_views import logged_in, post_json

DOOR_PREFIX = {"plain": "/test/doors/", "ninja": "/test/doors/ninja/"}
#: The test ninja API authenticates with the user's DRF token.
DOORS = ["plain", pytest.param("ninja", marks=pytest.mark.drf)]


def door_client(door: str, user: Any) -> Client:
    return bearer(user) if door == "ninja" else logged_in(user)


@pytest.mark.django_db
@pytest.mark.parametrize("door", DOORS)
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
@pytest.mark.parametrize("door", DOORS)
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

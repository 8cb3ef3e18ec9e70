"""No value of any admin query parameter is a server error (issue 9.15: ``?about=²`` was a 500)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.admin.views.main import ALL_VAR, ORDER_VAR, PAGE_VAR, SEARCH_VAR
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from django_idempotency.admin import IdempotencyEventAdmin, IdempotencyRecordAdmin
from tests.factories import IdempotencyRecordFactory

pytestmark = pytest.mark.django_db

RECORDS = reverse("admin:django_idempotency_idempotencyrecord_changelist")
EVENTS = reverse("admin:django_idempotency_idempotencyevent_changelist")
PURGE = reverse("admin:django_idempotency_idempotencyrecord_purge")
# Django's own changelist parameters, then each filter's.
COMMON = [ALL_VAR, ORDER_VAR, PAGE_VAR, SEARCH_VAR, "e", "_facets", "_to_field", "_popup"]


def filter_parameters(model_admin: Any) -> list[str]:
    """Every parameter a filter of this admin reads, found from its list_filter."""
    names = []
    for spec in model_admin.list_filter:
        if isinstance(spec, str):
            names += [f"{spec}__exact", f"{spec}__isnull"]
        else:
            names.append(spec.parameter_name)
    return names


PAGES = [(RECORDS, name) for name in COMMON + filter_parameters(IdempotencyRecordAdmin)] + [
    (EVENTS, name) for name in COMMON + filter_parameters(IdempotencyEventAdmin)
]
# What broke before, and what tends to: Unicode digits, NUL, numbers past a bigint, signs.
NASTY = [
    "\u00b2",
    "\u2460",
    "\uff11",
    "1\x00",
    "99999999999999999999999",
    "9223372036854775808",
    "-1",
    "1e999",
    "",
    "'",
    "--1",
    "\ud800",
]
VALUES = st.one_of(st.sampled_from(NASTY), st.text(max_size=30), st.integers().map(str))


@pytest.fixture
def admin_with_rows(admin_client: Client) -> Client:
    IdempotencyRecordFactory.create_batch(3)
    return admin_client


def test_every_filter_parameter_is_fuzzed() -> None:
    # The list is discovered, not typed: a new filter is fuzzed without touching this file.
    names = {name for _, name in PAGES}
    assert {"about", "kind__exact", "expired", "conflicted", "status"} <= names


@pytest.mark.parametrize(("page", "name"), PAGES)
@pytest.mark.parametrize("value", NASTY)
def test_nasty_values_are_never_a_server_error(
    admin_with_rows: Client, page: str, name: str, value: str
) -> None:
    response = admin_with_rows.get(f"{page}?{urlencode({name: value}, errors='surrogatepass')}")
    assert response.status_code < 500, (page, name, value)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(params=st.lists(st.tuples(st.sampled_from(PAGES), VALUES), min_size=1, max_size=4))
@example(params=[((EVENTS, "about"), "\u00b2")])
@example(params=[((EVENTS, "about"), "\u2460")])
def test_any_mix_of_parameters_is_never_a_server_error(
    admin_with_rows: Client, params: list[tuple[tuple[str, str], str]]
) -> None:
    for page in (RECORDS, EVENTS):
        query = [(name, value) for (where, name), value in params if where == page]
        url = f"{page}?{urlencode(query, errors='surrogatepass')}"
        assert admin_with_rows.get(url).status_code < 500, url


@pytest.mark.parametrize("pk", ["\u00b2", "99999999999999999999999", "-1", "abc", "1\x00"])
def test_nasty_record_ids_in_paths_are_never_a_server_error(admin_client: Client, pk: str) -> None:
    for model in ("idempotencyrecord", "idempotencyevent"):
        url = f"/admin/django_idempotency/{model}/{pk}/change/"
        assert admin_client.get(url).status_code < 500, url
    assert admin_client.get(PURGE).status_code == 200

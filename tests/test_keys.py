"""The Idempotency-Key header: what a valid key is, and how a bad one is refused."""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_idempotency.core.keys import parse_key
from django_idempotency.exceptions import InvalidKey
from django_idempotency.models import IdempotencyRecord
from example_project.shop.models import Note
from tests.testapp.models import Execution

pytestmark = pytest.mark.drf


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("abc", "abc"),
        ('"abc"', "abc"),  # RFC 8941 sf-string, the IETF draft's form
        ("a b", "a b"),  # inner spaces are printable ASCII
        ("x" * 255, "x" * 255),
        ('"' + "x" * 255 + '"', "x" * 255),  # the length counts after unquoting
        ('"a\\"b"', 'a"b'),
        ('"a\\\\b"', "a\\b"),
        ("~!#$%&'()*+-./:;<=>?@[]^_`{|}", "~!#$%&'()*+-./:;<=>?@[]^_`{|}"),
        ('"a,b"', "a,b"),  # a comma inside an sf-string is part of the key
        ('"a, b"', "a, b"),
    ],
)
def test_valid_keys(raw: str, key: str) -> None:
    assert parse_key(raw) == key


def test_absent_header_is_no_key() -> None:
    assert parse_key(None) is None


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param("", id="empty"),
        pytest.param('""', id="empty-quoted"),
        pytest.param("x" * 256, id="too-long"),
        pytest.param('"' + "x" * 256 + '"', id="too-long-quoted"),
        pytest.param('"abc', id="unclosed-quote"),
        pytest.param('abc"', id="stray-closing-quote"),
        pytest.param('a"b', id="inner-quote"),
        pytest.param('"a"b', id="text-after-quote"),
        pytest.param('"a\\b"', id="bad-escape"),
        pytest.param('"abc\\"', id="escaped-closing-quote"),
        pytest.param("a\tb", id="tab"),
        pytest.param("a\x00b", id="nul"),
        pytest.param("a\x7fb", id="del"),
        pytest.param("a\nb", id="newline"),
        pytest.param("clé", id="non-ascii"),
        pytest.param(" abc", id="leading-space"),
        pytest.param("abc ", id="trailing-space"),
        pytest.param('" abc"', id="leading-space-quoted"),
        pytest.param('"a\tb"', id="tab-quoted"),
    ],
)
def test_invalid_keys(raw: str) -> None:
    with pytest.raises(InvalidKey):
        parse_key(raw)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/test/probe/", ""),
        ("/test/optional-probe/", ""),  # empty is an error even where the key is optional
        ("/test/probe/", "x" * 256),
        ("/test/probe/", '"abc'),
        ("/test/probe/", "a\tb"),
    ],
)
def test_bad_key_is_refused_before_the_view(post, assert_problem, path: str, raw: str) -> None:
    response = post(path, {"label": "a"}, key=raw)
    assert_problem(response, 400, "invalid-idempotency-key")
    assert Execution.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.django_db
def test_missing_key_is_refused_where_required(post, assert_problem) -> None:
    response = post("/test/probe/", {"label": "a"})
    assert_problem(response, 400, "missing-idempotency-key")
    assert Execution.objects.count() == 0
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.django_db
def test_missing_key_runs_where_optional(post) -> None:
    assert post("/test/optional-probe/", {"label": "a"}).status_code == 201
    assert post("/test/optional-probe/", {"label": "a"}).status_code == 201
    assert Execution.objects.count() == 2
    assert IdempotencyRecord.objects.count() == 0


@pytest.mark.django_db
def test_keys_are_optional_project_wide_with_a_setting(post, assert_problem) -> None:
    """``IDEMPOTENCY_KEY_REQUIRED = False``: every view without its own attribute follows."""
    assert_problem(post("/test/probe/", {"label": "a"}), 400, "missing-idempotency-key")
    with override_settings(IDEMPOTENCY_KEY_REQUIRED=False):
        assert post("/test/probe/", {"label": "a"}).status_code == 201
        keyed = post("/test/probe/", {"label": "a"}, key="k")
        again = post("/test/probe/", {"label": "a"}, key="k")
        assert again["Idempotent-Replayed"] == "true"
        assert again.content == keyed.content
    assert Execution.objects.count() == 2


@pytest.mark.django_db
def test_quoted_and_bare_forms_name_the_same_key(post) -> None:
    first = post("/test/probe/", {"label": "a"}, key="abc")
    second = post("/test/probe/", {"label": "a"}, key='"abc"')
    assert second.status_code == 201
    assert second["Idempotent-Replayed"] == "true"
    assert second.content == first.content
    assert Execution.objects.count() == 1


@pytest.mark.django_db
def test_example_notes_take_an_optional_key(post) -> None:
    assert post("/api/notes/", {"text": "a"}).status_code == 201
    assert post("/api/notes/", {"text": "a"}).status_code == 201
    keyed = post("/api/notes/", {"text": "a"}, key="n")
    assert post("/api/notes/", {"text": "a"}, key="n").content == keyed.content
    assert Note.objects.count() == 3

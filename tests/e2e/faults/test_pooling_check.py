"""The transaction-pooling system checks, on settings alone (no database needed)."""

from __future__ import annotations

from typing import Any

import pytest

from django_idempotency.checks.pooling import proxy_messages, settings_messages

PREPARING = {"server_side_binding": True, "prepare_threshold": 5}


def alias(**settings: Any) -> dict[str, Any]:
    return {"PORT": "6432", "OPTIONS": {}, **settings}


@pytest.mark.parametrize(
    ("settings", "ids"),
    [
        (alias(), []),
        (alias(OPTIONS=PREPARING), []),  # no sign of a transaction pooler
        (alias(DISABLE_SERVER_SIDE_CURSORS=True), []),
        (alias(DISABLE_SERVER_SIDE_CURSORS=True, OPTIONS={"prepare_threshold": 5}), []),
        (alias(DISABLE_SERVER_SIDE_CURSORS=True, OPTIONS={"server_side_binding": True}), []),
        (alias(DISABLE_SERVER_SIDE_CURSORS=True, OPTIONS=PREPARING), ["django_idempotency.E100"]),
    ],
)
def test_prepared_statements_behind_a_transaction_pooler_are_refused(settings, ids) -> None:
    assert [message.id for message in settings_messages("default", settings)] == ids


@pytest.mark.parametrize(
    ("settings", "server_port", "ids"),
    [
        (alias(PORT="5432"), 5432, []),
        (alias(PORT=""), 5432, []),  # the default port
        (alias(PORT="5432"), None, []),  # a Unix socket: nothing to compare
        (alias(), 5432, ["django_idempotency.W100"]),
        (alias(DISABLE_SERVER_SIDE_CURSORS=True), 5432, []),
        (
            alias(DISABLE_SERVER_SIDE_CURSORS=True, OPTIONS=PREPARING),
            5432,
            ["django_idempotency.W100"],
        ),
    ],
)
def test_a_proxy_in_between_is_pointed_out(settings, server_port, ids) -> None:
    assert [message.id for message in proxy_messages("default", settings, server_port)] == ids

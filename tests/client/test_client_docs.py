"""The Python blocks of docs/client.md run as written, against a downstream service on
loopback in place of the shop and the carrier they name."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from .support import Callee

PAGE = Path(__file__).resolve().parents[2] / "docs" / "client.md"


def python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", PAGE.read_text(), re.MULTILINE | re.DOTALL)


def test_the_page_has_the_blocks_this_test_runs() -> None:
    assert len(python_blocks()) == 2


def test_the_client_example_sends_one_key_and_reads_the_result(callee: Callee) -> None:
    namespace: dict[str, Any] = {}
    code = python_blocks()[0].replace('SHOP = "https://shop.example.com"', f"SHOP = {callee.url!r}")
    callee.script = [(503, {}, b"")]  # one failure first: retried under the same key

    exec(compile(code, str(PAGE), "exec"), namespace)

    result = namespace["result"]
    assert (result.outcome, result.attempts) == ("done", 2)
    assert callee.seen == [result.key, result.key]


@pytest.mark.django_db(transaction=True)
def test_the_downstream_example_books_once_under_the_derived_key(callee: Callee) -> None:
    namespace: dict[str, Any] = {"CARRIER_URL": f"{callee.url}/bookings"}
    exec(compile(python_blocks()[1], str(PAGE), "exec"), namespace)

    first, again = namespace["ship"](5), namespace["ship"](5)

    assert first == again == {"charge": 1}  # the callee's answer, replayed by once()
    [key] = callee.seen
    assert key is not None
    assert key.startswith("idk_")  # derived, not random

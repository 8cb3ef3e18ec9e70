"""Every code block of the docs site is run, or comes from code that is.

The guides include the example project's code (``<!-- include: ... -->``, docs/hooks.py), which
the suite serves and sends requests to. What is written on a page itself is checked here:

- every Python block compiles; a settings block (only ``UPPER_CASE`` names) names real settings,
  and the project passes the package's system checks with them;
- every other Python block of a guide runs as a module of the example shop (its ``from .models``
  are the shop's), and the views, routers and functions it defines are sent requests or called,
  twice, as the page promises: the second answer replayed, the work done once;
- every ``curl`` of a guide is sent to the example project, as ``make demo`` serves it, and each
  ``http`` block after it is the answer: the first to that ``curl``, a later one to the same
  command sent again.

The quick start has its own module (tests/docs/test_quickstart.py), and so has the adoption
guide (tests/docs/test_adopting_guide.py).
"""

from __future__ import annotations

import ast
import base64
import functools
import importlib.util
import json
import re
import shlex
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.core.checks import run_checks
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import clear_url_caches, include, path
from ninja import NinjaAPI
from rest_framework import serializers
from rest_framework.authtoken.models import Token
from rest_framework.routers import SimpleRouter

from django_idempotency.conf import Settings
from example_project.shop.models import Order, Payment
from tests.testapp.models import Execution

pytestmark = [pytest.mark.drf, pytest.mark.docs]

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
#: Pages whose blocks another module runs.
TESTED_ELSEWHERE = {"quickstart.md", "adopting.md"}
#: The example project's module the page's code is run as, so that ``from .models`` works.
PACKAGE = "example_project.shop"


def site_pages() -> list[str]:
    def walk(entries: list[Any]) -> Iterator[str]:
        for entry in entries:
            for value in entry.values():
                yield from walk(value) if isinstance(value, list) else [value]

    return list(walk(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]))


@functools.cache
def hooks() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Block:
    page: str
    language: str
    text: str
    included: bool

    @property
    def is_settings(self) -> bool:
        assigned = [
            target.id
            for node in ast.parse(self.text).body
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        ]
        return bool(assigned) and all(name.isupper() for name in assigned)


FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@functools.cache
def blocks(page: str) -> tuple[Block, ...]:
    """The page's fenced blocks, in order, the included ones expanded as the site shows them
    (each opens with the name of its file: ``# example_project/...``)."""
    text = hooks().include_all((DOCS / page).read_text())
    return tuple(
        Block(page, language, body, body.startswith(("# example_project/", "{# example_project/")))
        for language, body in FENCE.findall(text)
    )


def guide_pages() -> list[str]:
    return [page for page in site_pages() if page not in TESTED_ELSEWHERE]


def python_blocks(*, settings: bool) -> list[Block]:
    return [
        block
        for page in guide_pages()
        for block in blocks(page)
        if block.language == "python" and not block.included and block.is_settings == settings
    ]


# -- Python blocks ---------------------------------------------------------------------------


@pytest.mark.parametrize("page", site_pages())
def test_every_python_block_compiles(page: str) -> None:
    for block in blocks(page):
        if block.language == "python":
            compile(block.text, page, "exec")


def test_the_guides_include_only_code_the_suite_runs() -> None:
    for page in site_pages():
        for match in hooks().INCLUDE.finditer((DOCS / page).read_text()):
            assert match.group(1).startswith("example_project/"), (page, match.group(0))


def test_an_include_that_leaves_out_what_it_uses_fails_the_build() -> None:
    with pytest.raises(ValueError, match="use OwnedMixin"):
        hooks().included("example_project/shop/views.py", "PaymentViewSet")
    shown = hooks().included("example_project/shop/views.py", "OwnedMixin", "PaymentViewSet")
    assert "from .models import Payment" in shown
    assert "# type: ignore" not in shown  # the type checker's comments are not the reader's


@pytest.mark.parametrize(
    "block", python_blocks(settings=True), ids=lambda b: f"{b.page}:{b.text[:30]}"
)
def test_every_settings_block_is_valid_settings(block: Block) -> None:
    namespace: dict[str, Any] = {}
    exec(block.text, namespace)  # as a user pastes it into settings.py
    ours = {name for name in namespace if name.startswith("IDEMPOTENCY_")}
    assert {name.removeprefix("IDEMPOTENCY_") for name in ours} <= set(vars(Settings))
    with override_settings(**{name: namespace[name] for name in ours}):
        errors = [m for m in run_checks(tags=["django_idempotency"]) if m.is_serious()]
    assert errors == []


# -- "your own code", as the pages name it ---------------------------------------------------


class CheckoutSerializer(serializers.ModelSerializer[Execution]):
    class Meta:
        model = Execution
        fields = ["id", "label"]


def record_event(event_id: str, payload: dict[str, Any]) -> None:
    Execution.objects.create(label=f"event {event_id}")


def import_file(path: str) -> list[str]:
    Execution.objects.create(label=f"import {path}")
    return [path]


YOUR_CODE = {
    "CheckoutSerializer": CheckoutSerializer,
    "record_event": record_event,
    "import_file": import_file,
}


@functools.cache
def page_module(page: str) -> dict[str, Any]:
    """The page's own Python blocks (not settings), run in order as one module of the shop."""
    name = f"{PACKAGE}.docs_{Path(page).stem.replace('-', '_')}"
    namespace: dict[str, Any] = {"__name__": name, "__package__": PACKAGE, **YOUR_CODE}
    for block in blocks(page):
        if block.language == "python" and not block.included and not block.is_settings:
            exec(compile(block.text, str(DOCS / page), "exec"), namespace)
    return namespace


def urlconf(*patterns: Any) -> types.ModuleType:
    module = types.ModuleType("docs_guide_urls")
    module.urlpatterns = list(patterns)  # type: ignore[attr-defined]
    return module


def twice(send: Callable[[], Any]) -> tuple[Any, Any]:
    return send(), send()


@pytest.fixture
def demo_user(db: None) -> Any:
    call_command("seed_demo", stdout=StringIO())
    return Token.objects.get(user__username="demo").user


def test_the_function_views_run_once_per_key(demo_user: Any) -> None:
    views = page_module("django-views.md")
    order = Order.objects.filter(owner=demo_user).first()
    client = Client()
    client.force_login(demo_user)
    with override_settings(
        ROOT_URLCONF=urlconf(path("pay/", views["pay"]), path("reorder/", views["reorder"]))
    ):
        clear_url_caches()
        first, again = twice(
            lambda: client.post(
                "/pay/", {"order": order.pk, "amount": "25.00"}, headers={"Idempotency-Key": "p1"}
            )
        )
        assert (first.status_code, again.status_code) == (201, 201)
        assert again.headers["Idempotent-Replayed"] == "true"
        assert Payment.objects.filter(order=order).count() == 1

        before = Order.objects.count()
        first, again = twice(
            lambda: client.post("/reorder/", {"item": "tea"}, headers={"Idempotency-Key": "r1"})
        )
        assert (first.status_code, again.status_code) == (201, 201)
        assert again.content == first.content
        assert again.headers["Idempotent-Replayed"] == "true"
        assert Order.objects.count() == before + 1
    clear_url_caches()


def test_the_ninja_router_runs_once_per_key(demo_user: Any) -> None:
    router = page_module("ninja.md")["payments"]
    api = NinjaAPI(urls_namespace="docs-ninja-guide")
    api.add_router("/payments/", router)
    client = Client()
    client.force_login(demo_user)
    with override_settings(ROOT_URLCONF=urlconf(path("ninja/", api.urls))):
        clear_url_caches()
        first, again = twice(
            lambda: client.post(
                "/ninja/payments/",
                {"order": 7, "amount": "25.00"},
                content_type="application/json",
                headers={"Idempotency-Key": "n1"},
            )
        )
        assert (first.status_code, again.status_code) == (201, 201)
        assert again.headers["Idempotent-Replayed"] == "true"
        # The router's reference: a new key for order 7 with another body is refused.
        other = client.post(
            "/ninja/payments/",
            {"order": 7, "amount": "30.00"},
            content_type="application/json",
            headers={"Idempotency-Key": "n2"},
        )
        assert other.status_code == 409
        refund = client.post("/ninja/payments/3/refund/", headers={"Idempotency-Key": "n3"})
        assert refund.status_code == 201
    clear_url_caches()


def test_the_guest_checkout_runs_once_per_key_and_guest(db: None) -> None:
    views = page_module("guests.md")
    router = SimpleRouter()
    router.register("checkouts", views["CheckoutViewSet"], basename="checkout")
    guest = Client()
    with override_settings(ROOT_URLCONF=urlconf(path("", include(router.urls)))):
        clear_url_caches()
        first, again = twice(
            lambda: guest.post(
                "/checkouts/",
                {"label": "basket 1"},
                content_type="application/json",
                headers={"Idempotency-Key": "g1"},
            )
        )
        # Another guest's copy of the same key is another operation.
        stranger = Client().post(
            "/checkouts/",
            {"label": "basket 1"},
            content_type="application/json",
            headers={"Idempotency-Key": "g1"},
        )
    clear_url_caches()
    assert (first.status_code, again.status_code, stranger.status_code) == (201, 201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in stranger.headers
    assert Execution.objects.filter(label="basket 1").count() == 2


def test_once_runs_the_webhook_and_the_import_once(db: None) -> None:
    code = page_module("side-effects.md")
    assert code["handle_webhook"]("evt_1", {"type": "paid"}) == {"handled": "evt_1"}
    assert code["handle_webhook"]("evt_1", {"type": "paid"}) == {"handled": "evt_1"}
    assert code["import_once"]("a.csv", "sha-1") == ["a.csv"]
    assert code["import_once"]("a.csv", "sha-1") == ["a.csv"]
    assert Execution.objects.filter(label="event evt_1").count() == 1
    assert Execution.objects.filter(label="import a.csv").count() == 1


def test_the_celery_task_block_defines_an_idempotent_task() -> None:
    from django_idempotency.celery.tasks import IdempotentTask

    task = page_module("celery.md")["ship_order"]
    assert isinstance(task, IdempotentTask)
    assert (task.idempotency_db_max_retries, task.idempotency_db_retry_backoff_max) == (20, 120)


def test_the_operating_guide_purges_and_counts_as_shown(db: None) -> None:
    """Its purge from Python, and its signal receivers, fed to a metrics module of the reader's
    (the django-celery-beat block needs that package: its task name and arguments are the beat
    schedule's, which tests/celery/test_beat.py loads into Celery)."""
    counted: list[str] = []
    metrics = types.ModuleType("myproject.metrics")
    metrics.counter = lambda name, **tags: counted.append(name)  # type: ignore[attr-defined]
    namespace: dict[str, Any] = {"__name__": "docs_operating"}
    modules = {"myproject": types.ModuleType("myproject"), "myproject.metrics": metrics}
    with pytest.MonkeyPatch.context() as patch:
        for name, module in modules.items():
            patch.setitem(sys.modules, name, module)
        for block in blocks("operating.md"):
            runnable = "django_celery_beat" not in block.text
            if block.language == "python" and not block.is_settings and runnable:
                exec(compile(block.text, str(DOCS / "operating.md"), "exec"), namespace)
    assert namespace["result"].dry_run is False
    from django_idempotency.signals import request_conflicted

    request_conflicted.disconnect(
        namespace["count_conflict"], sender=namespace["IdempotencyRecord"]
    )
    from django_idempotency.signals import response_replayed

    response_replayed.disconnect(namespace["count_replay"], sender=namespace["IdempotencyRecord"])


def test_every_python_block_of_a_guide_is_run() -> None:
    """A page with code of its own is exercised by a test above; a new one needs its test."""
    exercised = {
        "django-views.md",
        "ninja.md",
        "guests.md",
        "side-effects.md",
        "celery.md",
        "operating.md",
        "client.md",  # tests/client/test_client_docs.py
    }
    with_code = {block.page for block in python_blocks(settings=False)}
    assert with_code <= exercised, with_code - exercised


# -- curl ------------------------------------------------------------------------------------


@dataclass
class Demo:
    """``make demo``'s server, as the test client sees it, and the shell's variables."""

    client: Client
    variables: dict[str, str]

    def curl(self, command: str) -> Any:
        for name, value in self.variables.items():
            command = command.replace(f"${name}", value)
        words = shlex.split(command)
        assert words[0] == "curl", command
        headers: dict[str, str] = {}
        method, data, url = "GET", None, ""
        args = iter(words[1:])
        for arg in args:
            if arg in ("-i", "-s"):
                continue
            if arg == "-X":
                method = next(args)
            elif arg == "-u":
                headers["Authorization"] = "Basic " + base64.b64encode(next(args).encode()).decode()
            elif arg == "-H":
                name, _, value = next(args).partition(":")
                headers[name.strip()] = value.strip()
            elif arg == "-d":
                data, method = next(args), "POST" if method == "GET" else method
            elif arg.startswith("http://127.0.0.1:8000/"):
                url = arg.removeprefix("http://127.0.0.1:8000")
            else:
                raise AssertionError(f"the test does not know curl's {arg!r}")
        content_type = headers.pop("Content-Type", "application/octet-stream")
        response = self.client.generic(
            method, url, data or "", content_type=content_type, headers=headers
        )
        if response.get("Content-Type", "").startswith("application/json"):
            key = json.loads(response.content).get("key")
            if key:
                self.variables["KEY"] = key  # the issued key, for the next command
        return response


def assert_answers_as_shown(response: Any, shown: str) -> None:
    head, _, body = shown.partition("\n\n")
    status_line, *header_lines = head.splitlines()
    assert response.status_code == int(status_line.split()[1]), (status_line, response.content)
    for line in header_lines:
        name, _, value = line.partition(":")
        assert response.has_header(name), (name, response.headers)
        if value.strip() != "...":
            assert response[name] == value.strip(), (line, response.headers)
    if body.strip():
        answered = json.loads(response.content)
        for member, value in json.loads(body).items():
            assert member in answered, (member, answered)
            if value != "...":
                assert answered[member] == value, (member, answered)


def curl_pages() -> list[str]:
    return [p for p in guide_pages() if any(b.text.startswith("curl") for b in blocks(p))]


@pytest.mark.parametrize("page", curl_pages())
def test_every_curl_of_a_guide_answers_as_shown(page: str, demo_user: Any) -> None:
    order = Order.objects.filter(owner=demo_user).first()
    payment = Payment.objects.create(owner=demo_user, order=order, amount="25.00", charge_id="c")
    demo = Demo(
        Client(),
        {"TOKEN": Token.objects.get(user=demo_user).key, "PAYMENT": str(payment.pk)},
    )
    last, fresh, sent = "", None, 0
    for block in blocks(page):
        if block.language == "sh" and block.text.startswith("curl"):
            last, fresh = block.text.replace("\\\n", " "), None
            fresh = demo.curl(last)
            sent += 1
            assert fresh.status_code not in (404, 500), fresh.content
        elif block.language == "http":
            response = fresh if fresh is not None else demo.curl(last)
            fresh = None
            assert_answers_as_shown(response, block.text)
    assert sent


def test_the_readmes_example_and_its_retry(demo_user: Any) -> None:
    """README.md's one curl, sent twice as it says: 201, then the stored 201 replayed."""
    readme = (ROOT / "README.md").read_text()
    (command,) = [b for lang, b in FENCE.findall(readme) if lang == "sh" and "curl" in b]
    demo = Demo(Client(), {})
    first, again = twice(lambda: demo.curl(command.replace("\\\n", " ")))
    assert (first.status_code, again.status_code) == (201, 201)
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    for name in ("README.md", "README.pypi.md"):
        for lang, code in FENCE.findall((ROOT / name).read_text()):
            if lang == "python":
                compile(code, name, "exec")

"""The guide docs/adopting.md runs as written: its Python blocks are compiled, its settings
applied, its views defined from the page itself, routed and sent requests.

No copy of the page's code lives here, so the guide cannot drift from the package: a block
that stops compiling, a view that stops behaving as the page says, or a new view nobody routes
fails this module. What the page calls "your own code" (``Basket``, its serializers,
``place_order``, ``gateway`` ...) is supplied below, as small as the shapes need.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.sessions.models import Session
from django.core.checks import run_checks
from django.test import override_settings
from django.urls import include, path
from django.utils.module_loading import import_string
from rest_framework import serializers
from rest_framework.exceptions import APIException
from rest_framework.routers import SimpleRouter
from rest_framework.test import APIClient
from rest_framework.views import APIView

from django_idempotency.checks import views as checks_views
from django_idempotency.conf import DEFAULT_RELEASE_STATUS_CODES, Settings, app_settings
from django_idempotency.models import IdempotencyRecord
from tests.factories import TokenFactory
from tests.testapp.models import Execution

pytestmark = pytest.mark.drf

PAGE = Path(__file__).resolve().parent.parent / "docs" / "adopting.md"
#: ``__module__`` of the classes the page defines.
GUIDE_MODULE = "docs.adopting"
#: Sections whose settings are the project's for every shape (the page sets them first).
PROJECT_SECTIONS = ("Install", "Project-wide settings first")


@dataclass(frozen=True)
class Block:
    section: str
    line: int  # of the block's first line of code in the page
    code: str

    @property
    def is_settings(self) -> bool:
        return self.code.startswith("# settings.py")

    def compiled(self) -> types.CodeType:
        # Padded so that a traceback points at the page's own line.
        return compile("\n" * (self.line - 1) + self.code, str(PAGE), "exec")


@functools.cache
def blocks() -> tuple[Block, ...]:
    lines = PAGE.read_text().splitlines()
    found, section, index = [], "", 0
    while index < len(lines):
        if lines[index].startswith("## "):
            section = lines[index][3:].strip()
        elif lines[index].strip() == "```python":
            end = lines.index("```", index + 1)
            found.append(Block(section, index + 2, "\n".join(lines[index + 1 : end])))
            index = end
        index += 1
    return tuple(found)


def settings_of(block: Block) -> dict[str, Any]:
    namespace: dict[str, Any] = {"REST_FRAMEWORK": {}}  # an existing project has one
    exec(block.compiled(), namespace)
    return {name: value for name, value in namespace.items() if name.isupper()}


def project_settings() -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in blocks():
        if block.is_settings and block.section in PROJECT_SECTIONS:
            merged.update(settings_of(block))
    return merged


# -- "your own code", as the page names it ---------------------------------------------------


class ExecutionSerializer(serializers.ModelSerializer[Execution]):
    class Meta:
        model = Execution
        fields = ["id", "label"]


class UnknownVoucher(APIException):
    status_code = 406
    default_code = "unknown-voucher"
    default_detail = "Unknown voucher code."


class VoucherSerializer(ExecutionSerializer):
    def validate_label(self, value: str) -> str:
        if not value.startswith("VOUCHER-"):
            raise UnknownVoucher()
        return value


class PaymentSerializer(serializers.Serializer[Any]):
    basket = serializers.PrimaryKeyRelatedField(queryset=Execution.objects.all())
    secure_code = serializers.CharField(required=False)


class Gateway:
    """A card gateway: 3-D Secure first (a redirect, nothing paid), then the payment."""

    def pay(self, basket: Execution, secure_code: str | None = None) -> types.SimpleNamespace:
        if secure_code is None:
            Execution.objects.create(label=f"redirect {basket.pk}")
            return types.SimpleNamespace(redirect_url=f"https://gateway.example/3ds/{basket.pk}")
        paid = Execution.objects.create(label=f"paid {basket.pk}")
        return types.SimpleNamespace(redirect_url=None, id=paid.pk)


def open_basket(request: Any) -> None:
    request.session["basket"] = "open"
    Execution.objects.create(label="basket opened")


def place_order(basket: Execution) -> Execution:
    return Execution.objects.create(label=f"order for basket {basket.pk}")


YOUR_CODE: dict[str, Any] = {
    "Basket": Execution,
    "Line": Execution,
    "Voucher": Execution,
    "BasketSerializer": ExecutionSerializer,
    "LineSerializer": ExecutionSerializer,
    "VoucherSerializer": VoucherSerializer,
    "PaymentSerializer": PaymentSerializer,
    "gateway": Gateway(),
    "open_basket": open_basket,
    "place_order": place_order,
}


@functools.cache
def guide() -> dict[str, Any]:
    """The page's views: every block that is not settings, run in order as one views.py."""
    namespace: dict[str, Any] = {"__name__": GUIDE_MODULE, **YOUR_CODE}
    for block in blocks():
        if not block.is_settings:
            exec(block.compiled(), namespace)
    return namespace


def guide_views() -> set[type]:
    return {
        value
        for value in guide().values()
        if isinstance(value, type)
        and issubclass(value, APIView)
        and value.__module__ == GUIDE_MODULE
    }


@functools.cache
def urlconf() -> types.ModuleType:
    views = guide()
    router = SimpleRouter()
    router.register("baskets", views["BasketViewSet"], basename="basket")
    router.register("lines", views["LineViewSet"], basename="line")
    router.register("vouchers", views["VoucherViewSet"], basename="voucher")
    router.register("payments", views["PaymentViewSet"], basename="payment")
    module = types.ModuleType("adopting_urls")
    module.urlpatterns = [  # type: ignore[attr-defined]
        path("api/", include(router.urls)),
        path("api/checkout/", views["CheckoutView"].as_view(), name="checkout"),
        path("api/basket/lines/", views["AddLineView"].as_view(), name="basket-lines"),
        path("api/session/", views["GuestSessionView"].as_view(), name="guest-session"),
    ]
    return module


@pytest.fixture(autouse=True)
def the_guides_project() -> Iterator[None]:
    """The guide's URLconf and its project-wide settings, on the test project."""
    applied = project_settings()
    rest_framework = {**settings.REST_FRAMEWORK, **applied.pop("REST_FRAMEWORK")}
    applied.pop("INSTALLED_APPS")
    with override_settings(ROOT_URLCONF=urlconf(), REST_FRAMEWORK=rest_framework, **applied):
        yield


def keyed(client: APIClient, url: str, body: dict[str, Any], key: str | None) -> Any:
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return client.post(url, body, format="json", **headers)


def labels() -> list[str]:
    return sorted(Execution.objects.values_list("label", flat=True))


def assert_replayed(again: Any, first: Any) -> None:
    assert again.status_code == first.status_code
    assert again["Idempotent-Replayed"] == "true"
    assert again.content == first.content


# -- the page itself ----------------------------------------------------------------------------


def test_every_python_block_compiles_and_the_views_are_defined() -> None:
    assert len(blocks()) >= 10
    for block in blocks():
        block.compiled()
    assert {view.__name__ for view in guide_views()} >= {"BasketViewSet", "CheckoutView"}


def test_every_view_of_the_page_is_routed_here() -> None:
    """A view added to the page without a route (and so without a test) fails here."""
    assert set(checks_views.routed_view_classes()) == guide_views()


def test_its_settings_are_real_settings() -> None:
    names = {name for block in blocks() if block.is_settings for name in settings_of(block)}
    idempotency = {name for name in names if name.startswith("IDEMPOTENCY_")}
    assert idempotency, names
    assert {name.removeprefix("IDEMPOTENCY_") for name in idempotency} <= set(vars(Settings))
    installed = settings_of(next(b for b in blocks() if "INSTALLED_APPS" in b.code))
    assert {"rest_framework", "django_idempotency"} <= set(installed["INSTALLED_APPS"])
    assert {"rest_framework", "django_idempotency"} <= set(settings.INSTALLED_APPS)
    handler = installed["REST_FRAMEWORK"]["EXCEPTION_HANDLER"]
    assert callable(import_string(handler))
    assert app_settings.KEY_REQUIRED is False
    assert app_settings.PRINCIPAL == "session"


@pytest.mark.django_db(databases="__all__")  # the checks look at every alias
def test_the_system_checks_pass_on_the_guides_views_and_settings() -> None:
    assert checks_views.check_hidden_creates() == []
    assert checks_views.check_idempotent_without_mixin() == []
    ours = [m for m in run_checks() if (m.id or "").startswith("django_idempotency.")]
    assert ours == []


# -- each shape -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_modelviewset_create_runs_once_per_key(api: APIClient, assert_problem: Any) -> None:
    first = keyed(api, "/api/baskets/", {"label": "basket"}, "k")
    assert first.status_code == 201, first.content
    assert_replayed(keyed(api, "/api/baskets/", {"label": "basket"}, "k"), first)
    assert labels() == ["basket"]
    # Keys optional during the roll-out: a POST without one runs as it always did.
    assert keyed(api, "/api/baskets/", {"label": "unkeyed"}, None).status_code == 201
    # A key on an undecorated PATCH is refused, not ignored; without a key it runs as before.
    url = f"/api/baskets/{first.json()['id']}/"
    refused = api.patch(url, {"label": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="p")
    assert_problem(refused, 400, "idempotency-key-not-supported")
    assert api.patch(url, {"label": "x"}, format="json").status_code == 200


@pytest.mark.django_db
def test_without_the_problem_handler_refusals_use_the_projects_error_format(
    api: APIClient,
) -> None:
    basket = Execution.objects.create(label="basket")
    default = {**settings.REST_FRAMEWORK}
    default.pop("EXCEPTION_HANDLER")
    with override_settings(REST_FRAMEWORK=default):
        refused = api.patch(
            f"/api/baskets/{basket.pk}/", {"label": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="p"
        )
    assert refused.status_code == 400
    assert refused["Content-Type"] == "application/json"
    assert set(refused.json()) == {"detail"}


@pytest.mark.django_db
def test_an_apiview_checkout_resolves_every_spelling_of_the_basket(
    api: APIClient, assert_problem: Any
) -> None:
    pk = Execution.objects.create(label="basket").pk
    spellings = [
        f"http://testserver/api/baskets/{pk}/",
        f"/api/baskets/{pk}/",
        f"http://testserver/api/baskets/{pk}/?x=1",
        f"http://shop.example/api/baskets/{pk}/",
        f"https://shop.example/api/baskets/{pk}/?x=1",
    ]
    first = keyed(api, "/api/checkout/", {"basket": spellings[0]}, "k0")
    assert first.status_code == 201, first.content
    for n, spelling in enumerate(spellings[1:], start=1):
        assert_problem(
            keyed(api, "/api/checkout/", {"basket": spelling}, f"k{n}"),
            409,
            "idempotency-reference-conflict",
        )
    assert_replayed(keyed(api, "/api/checkout/", {"basket": spellings[0]}, "again"), first)
    assert labels() == ["basket", f"order for basket {pk}"]
    assert IdempotencyRecord.objects.get(key="k0").reference == f"basket:{pk}"


@pytest.mark.django_db
def test_a_generic_views_own_post_runs_once_per_key(api: APIClient) -> None:
    first = keyed(api, "/api/basket/lines/", {"label": "line"}, "k")
    assert first.status_code == 201, first.content
    assert_replayed(keyed(api, "/api/basket/lines/", {"label": "line"}, "k"), first)
    assert labels() == ["basket opened", "line"]


@pytest.mark.django_db
def test_a_406_is_released_and_the_default_list_kept(api: APIClient) -> None:
    refused = keyed(api, "/api/vouchers/", {"label": "nope"}, "k")
    assert refused.status_code == 406, refused.content
    corrected = keyed(api, "/api/vouchers/", {"label": "VOUCHER-1"}, "k")
    assert corrected.status_code == 201, corrected.content
    assert not corrected.has_header("Idempotent-Replayed")
    assert labels() == ["VOUCHER-1"]
    view = guide()["VoucherViewSet"]()
    assert view.get_idempotency_release_status_codes() == {*DEFAULT_RELEASE_STATUS_CODES, 406}


def test_the_project_wide_release_list_extends_the_default() -> None:
    (block,) = [b for b in blocks() if b.is_settings and "RELEASE_STATUS_CODES" in b.code]
    with override_settings(**settings_of(block)):
        released = app_settings.RELEASE_STATUS_CODES
    assert released == {*DEFAULT_RELEASE_STATUS_CODES, 406}


@pytest.mark.django_db
def test_a_gateway_redirect_does_not_hold_the_basket(api: APIClient, assert_problem: Any) -> None:
    basket = Execution.objects.create(label="basket").pk
    redirect = keyed(api, "/api/payments/", {"basket": basket}, "k1")
    assert redirect.status_code == 202, redirect.content
    assert_replayed(keyed(api, "/api/payments/", {"basket": basket}, "k1"), redirect)
    paid = keyed(api, "/api/payments/", {"basket": basket, "secure_code": "123"}, "k2")
    assert paid.status_code == 201, paid.content
    assert not paid.has_header("Idempotent-Replayed")
    # Now the basket is held: the same payment replays, another one is refused.
    assert_replayed(
        keyed(api, "/api/payments/", {"basket": basket, "secure_code": "123"}, "k3"), paid
    )
    other = keyed(api, "/api/payments/", {"basket": basket, "secure_code": "456"}, "k4")
    assert_problem(other, 409, "idempotency-reference-conflict")
    assert labels() == ["basket", f"paid {basket}", f"redirect {basket}"]


@pytest.mark.django_db
def test_a_replay_runs_none_of_the_views_finalize_response(api: APIClient) -> None:
    first = keyed(api, "/api/lines/", {"label": "line"}, "k")
    assert first.status_code == 201, first.content
    assert first["X-Basket-Lines"] == "1"
    Execution.objects.create(label="another line")  # the live basket changes
    again = keyed(api, "/api/lines/", {"label": "line"}, "k")
    assert_replayed(again, first)
    assert again["X-Basket-Lines"] == "1"


# -- guests ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_guest_who_logs_in_between_two_copies_gets_the_replay(user: Any) -> None:
    client = APIClient()
    first = keyed(client, "/api/basket/lines/", {"label": "line"}, "k")
    assert first.status_code == 201, first.content
    assert client.login(username=user.username, password="secret")
    assert_replayed(keyed(client, "/api/basket/lines/", {"label": "line"}, "k"), first)
    assert labels() == ["basket opened", "line"]
    keyed(client, "/api/basket/lines/", {"label": "line"}, "after-login")
    record = IdempotencyRecord.objects.get(key="after-login")
    assert record.scope.endswith(f"|auth.user:{user.pk}")


@pytest.mark.django_db
def test_a_guest_who_switches_to_a_token_is_a_new_principal(user: Any) -> None:
    """The limit the page states: only login() in that session carries the guest."""
    client = APIClient()
    keyed(client, "/api/basket/lines/", {"label": "line"}, "k")
    client.credentials(HTTP_AUTHORIZATION=f"Token {TokenFactory(user=user).key}")
    again = keyed(client, "/api/basket/lines/", {"label": "line"}, "k")
    assert again.status_code == 201
    assert not again.has_header("Idempotent-Replayed")
    assert labels().count("line") == 2


@pytest.mark.django_db
def test_a_guests_first_request_may_be_the_keyed_post() -> None:
    client = APIClient()
    first = keyed(client, "/api/basket/lines/", {"label": "line"}, "k")
    assert first.status_code == 201, first.content
    assert settings.SESSION_COOKIE_NAME in first.cookies
    assert_replayed(keyed(client, "/api/basket/lines/", {"label": "line"}, "k"), first)
    # The catch: the first answer lost, its cookie with it; the retry is a new guest.
    lost = keyed(APIClient(), "/api/basket/lines/", {"label": "line"}, "k")
    assert lost.status_code == 201
    assert not lost.has_header("Idempotent-Replayed")
    assert labels().count("line") == 2


@pytest.mark.django_db
def test_a_guest_session_started_first_survives_a_lost_answer() -> None:
    client = APIClient()
    started = client.get("/api/session/")
    assert started.status_code == 204
    cookie = started.cookies[settings.SESSION_COOKIE_NAME].value
    assert Session.objects.filter(session_key=cookie).exists()
    first = keyed(client, "/api/basket/lines/", {"label": "line"}, "k")
    # The first answer is lost (its cookies with it): the client still has the session.
    retry = APIClient()
    retry.cookies[settings.SESSION_COOKIE_NAME] = cookie
    assert_replayed(keyed(retry, "/api/basket/lines/", {"label": "line"}, "k"), first)
    assert labels() == ["basket opened", "line"]


@pytest.mark.django_db
def test_a_cookie_naming_no_stored_session_is_refused(assert_problem: Any) -> None:
    client = APIClient()
    client.cookies[settings.SESSION_COOKIE_NAME] = "a" * 32
    refused = keyed(client, "/api/basket/lines/", {"label": "line"}, "k")
    assert_problem(refused, 403, "idempotency-key-requires-authentication")
    assert labels() == []


def test_the_page_names_what_it_tests() -> None:
    """The page points here; keep the pointer true."""
    assert re.search(r"`tests/test_adopting_guide\.py`", PAGE.read_text())

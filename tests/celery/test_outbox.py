"""The Celery outbox against a real RabbitMQ (a queue of each test's own) and real commits.

The defect it closes (issue #13): ``transaction.on_commit(signature.apply_async)`` lost the
shipment for good when the publish after the commit failed, while the stored 202 said
"accepted" to every retry. Here the broker is unreachable at commit time; the message waits in
the outbox and the relay sends it once the broker is back.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import re
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from amqp import Message
from celery import Celery
from celery.beat import ScheduleEntry
from celery.signals import before_task_publish
from django.core.management import CommandError, call_command
from django.db import connections, transaction
from django.db.models import F
from kombu import Connection

from django_idempotency.celery.outbox import (
    current_app,
    relay_outbox,
    send_on_commit,
)
from django_idempotency.models import OutboxMessage
from django_idempotency.models.outbox import OutboxSendError
from example_project.celery import app
from example_project.shop.tasks import ship_order
from tests.factories import OrderFactory
from tests.services import AMQP_URL
from tests.soak.proxy import FaultProxy

if TYPE_CHECKING:
    from rest_framework.test import APIClient

ROOT = Path(__file__).resolve().parents[2]
TASK = "shop.ship_order"
#: Ports for this module's fault proxies, a new one each time: kombu pools connections per
#: broker URL for the whole process, and a pooled link through a closed proxy is dead.
PROXY_PORTS = iter(range(18300, 18400))


def drain(queue: str) -> list[Message]:
    """Every message in ``queue`` (taken off it); none if no publish ever declared it."""
    with Connection(AMQP_URL) as connection:
        channel = connection.channel()
        try:
            channel.queue_declare(queue, passive=True)
        except connection.channel_errors:
            return []
        messages = []
        while (message := channel.basic_get(queue=queue, no_ack=True)) is not None:
            messages.append(message)
        return messages


def task_ids(messages: list[Message]) -> list[str]:
    return [message.headers["id"] for message in messages]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def broker(url: str, queue: str) -> Iterator[None]:
    """The example's Celery app publishes to ``url``, ``queue``, failing at once if it can't."""
    changes = {
        "broker_url": url,
        "task_default_queue": queue,
        "task_always_eager": False,
        # No retries, in the publish and in the connection: an unreachable broker fails fast.
        "task_publish_retry": False,
        "broker_transport_options": {"max_retries": 0},
    }
    saved = {name: app.conf[name] for name in changes}
    app.conf.update(changes)
    _forget_connections()
    try:
        yield
    finally:
        app.conf.update(saved)
        _forget_connections()


def _forget_connections() -> None:
    # The app keeps the pool of connections to the broker it first used: a test that moves the
    # broker makes it look its pool up again. kombu keeps one pool per broker URL for the whole
    # process and hands the same one out again, so it is left open.
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def unreachable(queue: str) -> Iterator[None]:
    with broker(f"amqp://guest:guest@127.0.0.1:{closed_port()}//", queue):
        yield


@pytest.fixture
def reachable(queue: str) -> Iterator[None]:
    with broker(AMQP_URL, queue):
        yield


def ship(client: APIClient, order: int, key: str) -> Any:
    return client.post(f"/api/orders/{order}/ship/", HTTP_IDEMPOTENCY_KEY=key)


@pytest.mark.drf  # the example's ship action is a DRF action
@pytest.mark.django_db(transaction=True)
def test_a_shipment_whose_publish_failed_at_commit_is_sent_by_the_relay(
    api: APIClient, user: Any, queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    order = OrderFactory(owner=user)
    with broker(f"amqp://guest:guest@127.0.0.1:{closed_port()}//", queue):
        with caplog.at_level(logging.WARNING, "django_idempotency.celery.outbox"):
            first = ship(api, order.pk, "ship-1")
        assert first.status_code == 202, first.content
        task_id = first.json()["task_id"]
        # The request committed; its publish failed, was logged, and the message waits.
        assert task_id in caplog.text
        assert "The relay will send it" in caplog.text
        message = OutboxMessage.objects.get()
        assert (message.task_id, message.name, message.args) == (task_id, TASK, [order.pk])
        # A retry replays the stored 202: it neither sends nor writes anything.
        assert ship(api, order.pk, "ship-1").content == first.content
        assert OutboxMessage.objects.count() == 1

    with broker(AMQP_URL, queue):
        assert relay_outbox(app=app).sent == 0  # younger than IDEMPOTENCY_OUTBOX_RELAY_AFTER
        assert OutboxMessage.objects.count() == 1
        assert relay_outbox(app=app, older_than=0).sent == 1
        assert not OutboxMessage.objects.exists()
        (sent,) = drain(queue)
        assert sent.headers["id"] == task_id
        assert sent.headers["task"] == TASK
        assert json.loads(sent.body)[0] == [order.pk]  # (args, kwargs, embed)

        replay = ship(api, order.pk, "ship-1")
        assert replay.status_code == 202
        assert replay.content == first.content
        assert replay["Idempotent-Replayed"] == "true"
        assert drain(queue) == []
        assert not OutboxMessage.objects.exists()
        assert relay_outbox(app=app, older_than=0).sent == 0


@pytest.mark.django_db(transaction=True)
def test_a_commit_sends_the_message_once_and_deletes_it(queue: str, reachable: None) -> None:
    with transaction.atomic():
        task_id = send_on_commit(ship_order.s(7).set(priority=3))
        assert OutboxMessage.objects.get().options == {"priority": 3}
        assert drain(queue) == []  # nothing leaves before the commit
    (sent,) = drain(queue)
    assert sent.headers["id"] == task_id
    assert sent.properties["priority"] == 3
    assert not OutboxMessage.objects.exists()
    assert relay_outbox(app=app, older_than=0).sent == 0
    assert drain(queue) == []


@pytest.mark.django_db(transaction=True)
def test_a_rollback_sends_nothing_and_leaves_nothing(queue: str, reachable: None) -> None:
    class Refused(Exception):
        pass

    def write_then_refuse() -> None:
        with transaction.atomic():
            send_on_commit(ship_order.s(7))
            raise Refused

    with pytest.raises(Refused):
        write_then_refuse()
    assert not OutboxMessage.objects.exists()
    assert relay_outbox(app=app, older_than=0).sent == 0
    assert drain(queue) == []


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_nothing_is_sent_unprotected(queue: str, reachable: None) -> None:
    with pytest.raises(RuntimeError, match="needs a transaction on database 'default'"):
        send_on_commit(ship_order.s(7))
    assert not OutboxMessage.objects.exists()
    assert drain(queue) == []


@pytest.mark.django_db(transaction=True)
def test_options_that_are_not_json_are_refused_before_anything_is_written(
    queue: str, reachable: None
) -> None:
    eta = datetime(2030, 1, 1, tzinfo=timezone.utc)
    refused = [
        (ship_order.s(7).set(eta=eta), "options['eta'] is a datetime.datetime"),
        (ship_order.s(7).set(link=ship_order.s(8)), "options['link'] is a celery.canvas"),
        (ship_order.s(object()), "args[0] is a builtins.object"),
    ]
    for signature, message in refused:
        with transaction.atomic():
            with pytest.raises(TypeError, match=re.escape(message)):
                send_on_commit(signature)
            assert not OutboxMessage.objects.exists()
    with transaction.atomic(), pytest.raises(TypeError, match="not a chain"):
        send_on_commit(ship_order.s(7) | ship_order.s())
    assert drain(queue) == []


@pytest.mark.django_db(transaction=True)
def test_the_relay_leaves_messages_younger_than_the_age(queue: str, unreachable: None) -> None:
    # The broker is down: the message waits in the outbox, and a relay that finds nothing due
    # does not even try to publish.
    with transaction.atomic():
        send_on_commit(ship_order.s(7))
    assert relay_outbox(app=app, older_than=60).sent == 0
    assert relay_outbox(app=app).sent == 0  # IDEMPOTENCY_OUTBOX_RELAY_AFTER: 30 seconds
    assert OutboxMessage.objects.count() == 1

    OutboxMessage.objects.update(created_at=F("created_at") - timedelta(seconds=31))
    with pytest.raises(OutboxSendError) as failed:  # due now, and the broker is still down
        relay_outbox(app=app)
    assert failed.value.sent == 0
    assert OutboxMessage.objects.count() == 1


@pytest.mark.concurrent_db
@pytest.mark.django_db(transaction=True)
def test_two_relays_racing_publish_each_message_once(queue: str, reachable: None) -> None:
    """The first relay stops inside its first publish, holding its batch; the second skips
    that batch and publishes the rest; then the first finishes its own. Each message once."""
    for index in range(30):
        OutboxMessage.objects.add(task_id=f"race-{index}", name=TASK, args=[index])
    holding, release = threading.Event(), threading.Event()
    first_thread: list[threading.Thread] = []

    def hold(sender: Any = None, **kwargs: Any) -> None:
        if threading.current_thread() is first_thread[0] and not holding.is_set():
            holding.set()
            assert release.wait(30)

    def relay(first: bool) -> int:
        try:
            if first:
                first_thread.append(threading.current_thread())
            else:
                assert holding.wait(30)
            return relay_outbox(app=app, older_than=0, batch_size=10).sent
        finally:
            if not first:
                release.set()
            connections.close_all()

    before_task_publish.connect(hold, weak=False)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            first = pool.submit(relay, True)
            second = pool.submit(relay, False)
            counts = (first.result(timeout=60), second.result(timeout=60))
    finally:
        before_task_publish.disconnect(hold)

    assert counts == (10, 20)
    sent = task_ids(drain(queue))
    assert sorted(sent) == sorted(f"race-{index}" for index in range(30))
    assert not OutboxMessage.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_failed_relay_publishes_in_order_and_keeps_the_rest(queue: str) -> None:
    for index in range(3):
        OutboxMessage.objects.add(task_id=f"t-{index}", name=TASK, args=[index])
    down = f"amqp://guest:guest@127.0.0.1:{closed_port()}//"
    with broker(down, queue), pytest.raises(OutboxSendError, match="'t-0'"):
        relay_outbox(app=app, older_than=0)
    assert OutboxMessage.objects.count() == 3
    with broker(AMQP_URL, queue):
        assert relay_outbox(app=app, older_than=0, batch_size=2).sent == 3
    assert task_ids(drain(queue)) == ["t-0", "t-1", "t-2"]


# -- the broker's confirm ---------------------------------------------------------------------


def is_publish(chunk: bytes) -> bool:
    """Whether ``chunk`` holds an AMQP ``basic.publish`` method frame (class 60, method 40)."""
    offset = 0
    while offset + 11 <= len(chunk):
        size = int.from_bytes(chunk[offset + 3 : offset + 7], "big")
        if chunk[offset] == 1 and chunk[offset + 7 : offset + 11] == b"\x00\x3c\x00\x28":
            return True
        offset += 8 + size  # type, channel, size, payload, frame end
    return False


@contextmanager
def fault_proxy() -> Iterator[tuple[FaultProxy, str]]:
    """The soak's fault proxy in front of the machine's RabbitMQ, run by a loop in a thread;
    yields it and the broker URL through it."""
    upstream = urlsplit(AMQP_URL)
    proxy = FaultProxy(upstream.hostname or "127.0.0.1", upstream.port or 5672)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(30)

    try:
        for port in PROXY_PORTS:
            try:
                run(proxy.start(port))
                break
            except OSError:
                continue
        else:
            raise RuntimeError("no free port left in 18300-18399")
        credentials = upstream.netloc.rpartition("@")[0]
        yield proxy, upstream._replace(netloc=f"{credentials}@127.0.0.1:{proxy.port}").geturl()
    finally:
        run(proxy.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


def outbox() -> list[tuple[str, int]]:
    return list(OutboxMessage.objects.order_by("pk").values_list("task_id", "attempts"))


@pytest.mark.django_db(transaction=True)
def test_a_publish_cut_after_its_write_keeps_its_row_for_the_relay(queue: str) -> None:
    """The connection dies right after the publish was written: the broker never got the
    message, so the row may not go (it went, before publisher confirms, and the task with it)."""
    with fault_proxy() as (proxy, url), broker(url, queue):
        proxy.cut_on(is_publish)
        with transaction.atomic():
            task_id = send_on_commit(ship_order.s(7))
        assert proxy.resets == 1  # the publish was written, and the link cut under it
        assert drain(queue) == []
        assert outbox() == [(task_id, 0)]  # an unreachable broker is no fault of the message
        relay_outbox(app=app, older_than=0)  # the next connection through the proxy is fine
    assert task_ids(drain(queue)) == [task_id]
    assert not OutboxMessage.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_relay_cut_after_a_publish_stops_there_and_keeps_the_rest(queue: str) -> None:
    for index in range(3):
        OutboxMessage.objects.add(task_id=f"t-{index}", name=TASK, args=[index])
    publishes = itertools.count(1)
    with fault_proxy() as (proxy, url), broker(url, queue):
        proxy.cut_on(lambda chunk: is_publish(chunk) and next(publishes) == 2)
        with pytest.raises(OutboxSendError, match="'t-1'") as failed:
            relay_outbox(app=app, older_than=0)
        assert failed.value.sent == 1
        assert proxy.resets == 1
        assert outbox() == [("t-1", 0), ("t-2", 0)]
        assert task_ids(drain(queue)) == ["t-0"]
        relay_outbox(app=app, older_than=0)
    assert task_ids(drain(queue)) == ["t-1", "t-2"]
    assert not OutboxMessage.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_message_the_broker_refuses_is_kept_not_lost(queue: str, reachable: None) -> None:
    """Published to an exchange that does not exist, RabbitMQ drops the message and closes the
    channel; only its confirm tells. The message is set aside and the next one still goes."""
    missing = f"{queue}-missing"
    with transaction.atomic():
        refused = send_on_commit(ship_order.s(1).set(exchange=missing, routing_key=queue))
    with transaction.atomic():
        accepted = send_on_commit(ship_order.s(2))
    assert task_ids(drain(queue)) == [accepted]
    assert outbox() == [(refused, 1)]
    assert "NOT_FOUND" in OutboxMessage.objects.get().last_error


@pytest.mark.django_db(transaction=True)
def test_on_redis_the_publish_is_answered_and_the_row_goes(queue: str) -> None:
    """No publisher confirms on Redis: its publish is an LPUSH whose reply it waits for."""
    import redis

    url = os.environ.get("CELERY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url)
    try:
        with broker(url, queue), transaction.atomic():
            task_id = send_on_commit(ship_order.s(7))
        assert not OutboxMessage.objects.exists()
        (raw,) = client.lrange(queue, 0, -1)
        assert json.loads(raw)["headers"]["id"] == task_id
    finally:
        client.delete(queue)
        client.close()


# -- one bad message -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_message_that_cannot_be_published_is_parked_and_the_rest_go(
    queue: str, unreachable: None
) -> None:
    with transaction.atomic():
        first = send_on_commit(ship_order.s(1))
        bad = send_on_commit(ship_order.s(2).set(countdown="soon"))  # JSON, but no countdown
        last = send_on_commit(ship_order.s(3))
    # The broker was down at the commit: nothing went. The bad message also failed on its own
    # (before any connection), which counts.
    assert outbox() == [(first, 0), (bad, 1), (last, 0)]

    with broker(AMQP_URL, queue):
        result = relay_outbox(app=app, older_than=0, max_attempts=3)
        assert (result.sent, result.parked) == (2, 0)
        (aside,) = result.set_aside
        assert (aside.task_id, aside.attempts, aside.parked) == (bad, 2, False)
        assert task_ids(drain(queue)) == [first, last]
        message = OutboxMessage.objects.get()
        assert (message.task_id, message.attempts, message.parked_at) == (bad, 2, None)
        assert message.last_error.startswith("TypeError: ")
        assert message.last_attempt_at is not None

        second = relay_outbox(app=app, older_than=0, max_attempts=3)
        assert (second.sent, second.parked, second.set_aside[0].parked) == (0, 1, True)
        assert OutboxMessage.objects.get().parked_at is not None
        # Parked: the relay leaves it alone, and says so every time.
        third = relay_outbox(app=app, older_than=0, max_attempts=3)
        assert (third.sent, third.set_aside, third.parked) == (0, (), 1)

        with transaction.atomic():
            after = send_on_commit(ship_order.s(4))
        assert task_ids(drain(queue)) == [after]
        assert OutboxMessage.objects.parked().unpark() == 1
        assert OutboxMessage.objects.get().attempts == 0
    assert drain(queue) == []


@pytest.mark.django_db(transaction=True)
def test_a_message_whose_frame_the_broker_refuses_is_parked_and_the_rest_go(
    queue: str, unreachable: None
) -> None:
    """A header bigger than the connection's frame size: RabbitMQ answers with FRAME_ERROR and
    closes the whole connection, which looks like a broker out of reach. The message, not the
    broker, is at fault: it must count its attempts and be parked, not stop every relay."""
    with transaction.atomic():
        bad = send_on_commit(ship_order.s(1).set(headers={"trace": "x" * 300_000}))
        good = send_on_commit(ship_order.s(2))
    assert outbox() == [(bad, 0), (good, 0)]  # the broker was down at the commit

    with broker(AMQP_URL, queue):
        result = relay_outbox(app=app, older_than=0, max_attempts=1)
        assert (result.sent, result.parked) == (1, 1)
        assert task_ids(drain(queue)) == [good]
    message = OutboxMessage.objects.get()
    assert (message.task_id, message.attempts) == (bad, 1)
    assert "FRAME_ERROR" in message.last_error


@pytest.mark.django_db(transaction=True)
def test_the_command_reports_what_it_set_aside_and_parked(queue: str, reachable: None) -> None:
    OutboxMessage.objects.add(task_id="bad", name=TASK, args=[1], options={"countdown": "soon"})
    OutboxMessage.objects.add(task_id="good", name=TASK, args=[2])
    out, err = StringIO(), StringIO()
    with current(app):
        call_command(
            "idempotency_relay_outbox", "--older-than", "0", "--max-attempts", "1",
            stdout=out, stderr=err,
        )  # fmt: skip
    assert out.getvalue().strip() == "Published 1 outbox message on database 'default'."
    lines = err.getvalue().strip().splitlines()
    assert lines[0].startswith("Outbox message 'bad' parked after 1 failed attempt: ")
    assert "TypeError" in lines[0]
    assert lines[1].startswith("1 outbox message is parked on database 'default'")
    assert task_ids(drain(queue)) == ["good"]


@pytest.mark.django_db(transaction=True)
def test_the_beat_task_reports_what_it_set_aside(queue: str, reachable: None) -> None:
    import django_idempotency.celery.beat  # noqa: F401 (registers the package's tasks)

    OutboxMessage.objects.add(task_id="bad", name=TASK, args=[1], options={"countdown": "soon"})
    OutboxMessage.objects.add(task_id="good", name=TASK, args=[2])
    task = app.tasks["django_idempotency.relay_outbox"]
    result = task.apply(kwargs={"older_than": 0}).get()
    assert result["sent"] == 1
    assert result["parked"] == 0
    assert [(item["task_id"], item["attempts"]) for item in result["set_aside"]] == [("bad", 1)]
    json.dumps(result)  # a result backend stores it
    assert task_ids(drain(queue)) == ["good"]


@pytest.mark.django_db(transaction=True)
def test_the_beat_task_relays_with_its_own_app(queue: str, reachable: None) -> None:
    import django_idempotency.celery.beat  # noqa: F401 (registers the package's tasks)

    OutboxMessage.objects.add(task_id="beat-1", name=TASK, args=[1])
    task = app.tasks["django_idempotency.relay_outbox"]
    assert task.apply(kwargs={"older_than": 0}).get()["sent"] == 1
    assert task_ids(drain(queue)) == ["beat-1"]


@contextmanager
def current(celery_app: Celery) -> Iterator[None]:
    previous = current_app_or_none()
    celery_app.set_current()
    try:
        yield
    finally:
        if previous is not None:
            previous.set_current()


def current_app_or_none() -> Celery | None:
    from celery import current_app as proxy

    return proxy._get_current_object()  # type: ignore[no-any-return]


@pytest.mark.django_db(transaction=True)
def test_the_command_relays_with_the_current_app(queue: str, reachable: None) -> None:
    OutboxMessage.objects.add(task_id="cmd-1", name=TASK, args=[1])
    out = StringIO()
    with current(app):
        assert current_app() is app
        call_command("idempotency_relay_outbox", "--older-than", "0", stdout=out)
    assert out.getvalue().strip() == "Published 1 outbox message on database 'default'."
    assert task_ids(drain(queue)) == ["cmd-1"]


@pytest.mark.django_db(transaction=True)
def test_the_command_fails_loudly_when_the_broker_is_down(queue: str, unreachable: None) -> None:
    OutboxMessage.objects.add(task_id="cmd-1", name=TASK, args=[1])
    with current(app), pytest.raises(CommandError, match="could not send outbox message 'cmd-1'"):
        call_command("idempotency_relay_outbox", "--older-than", "0", stdout=StringIO())
    assert OutboxMessage.objects.count() == 1


@pytest.mark.django_db
def test_the_command_refuses_celerys_unconfigured_fallback_app() -> None:
    fallback = Celery("default", set_as_current=False)  # what Celery makes when no app exists
    with current(fallback), pytest.raises(CommandError, match="No Celery app is loaded"):
        call_command("idempotency_relay_outbox", stdout=StringIO())


def beat_schedules() -> list[dict[str, Any]]:
    from example_project import settings as example

    snippets = re.findall(
        r"```python\n(.*?)```", (ROOT / "docs" / "celery.md").read_text(), flags=re.DOTALL
    )
    schedules = [example.CELERY_BEAT_SCHEDULE]
    for snippet in snippets:
        if "CELERY_BEAT_SCHEDULE =" in snippet:
            namespace: dict[str, Any] = {}
            exec(snippet, namespace)  # the block as a user pastes it into settings.py
            schedules.append(namespace["CELERY_BEAT_SCHEDULE"])
    return schedules


@pytest.mark.django_db(databases="__all__")
def test_the_example_and_documented_beat_entries_load_into_celery() -> None:
    schedules = beat_schedules()
    assert len(schedules) == 2  # the example's, and the one in docs/celery.md
    for schedule in schedules:
        beat = Celery("beat-check", set_as_current=False)
        beat.conf.update(
            beat_schedule=schedule,
            imports=["django_idempotency.celery.beat"],
            broker_url="memory://",
        )
        beat.loader.import_default_modules()
        beat.finalize(auto=True)
        assert "idempotency-relay-outbox" in schedule
        for name, entry in schedule.items():
            assert entry["task"] in beat.tasks, entry["task"]
            scheduled = ScheduleEntry(name=name, app=beat, **entry)
            assert 0 < scheduled.is_due()[1] <= 24 * 3600

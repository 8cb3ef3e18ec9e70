"""What the soak leaves on the shared RabbitMQ: nothing of its run's names."""

from __future__ import annotations

import os
import socket
import uuid

import pytest
from amqp.exceptions import NotFound
from kombu import Connection, Exchange, Queue

from tests.services import AMQP_URL, delete_queue

from .doors import DOORS, committed
from .mariadb import translate
from .services import Services, free_port, use_ports


def exists(channel_of: Connection, declare: str, name: str) -> bool:
    channel = channel_of.channel()
    try:
        if declare == "queue":
            channel.queue_declare(name, passive=True)
        else:
            channel.exchange_declare(name, "direct", passive=True)
        return True
    except NotFound:
        return False
    finally:
        if channel.is_open:
            channel.close()


@pytest.mark.e2e
def test_delete_queue_removes_the_exchange_celery_declared_for_it() -> None:
    # A worker with CELERY_TASK_DEFAULT_QUEUE = name declares a durable direct exchange of the
    # same name too; left behind, every soak run adds one to the shared broker.
    name = f"idempotency-soak-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with Connection(AMQP_URL, connect_timeout=5) as connection:
        queue = Queue(name, Exchange(name, "direct"), routing_key=name)
        queue(connection.default_channel).declare()
        try:
            delete_queue(name)
            assert not exists(connection, "queue", name)
            assert not exists(connection, "exchange", name)
        finally:
            connection.default_channel.queue_delete(name)
            connection.default_channel.exchange_delete(name)


def test_free_port_takes_ports_from_the_range_it_was_given() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        taken.listen()
        try:
            use_ports(f"{port}-{port + 1}")
            assert free_port() == port + 1  # the first one is in use: skipped
            with pytest.raises(RuntimeError, match="no free port left"):
                free_port()
        finally:
            use_ports(None)
    with pytest.raises(ValueError, match="FIRST-LAST"):
        use_ports("18999-18900")


@pytest.mark.e2e
def test_close_leaves_nothing_behind_after_the_broker_node_was_killed() -> None:
    # The soak's own RabbitMQ node and PostgreSQL cluster, the node SIGKILLed and restarted
    # (as the nemesis does: its port programs outlive it unless killed too), then closed.
    services = Services()
    try:
        services.database.init()
        services.database.start()
        services.broker.init()
        services.broker.start()
        assert services.broker.name in services.broker.ctl("status")  # the cookie works
        services.broker.restart()
        with Connection(services.broker.url, connect_timeout=5) as connection:
            connection.default_channel.queue_declare(services.queue, durable=True)
        found = services.leftovers()
        # The check sees what is running: the node, the cluster, their directories.
        assert any("beam.smp" in line for line in found), found
        assert any("postgres" in line for line in found), found
        assert f"directory {services.broker.root}" in found
    finally:
        services.close()
    assert services.leftovers(wait=10) == []


def test_the_checker_queries_read_on_mariadb_without_postgresql_words() -> None:
    # Every door's query in MariaDB's words: no cast, no commit time.
    for door in DOORS:
        translated = translate(door.effects_sql)
        assert "::" not in translated, translated
        assert "pg_" not in translated, translated
        assert "xmin" not in translated, translated
    assert translate("SELECT s.order_id::text, amount::text") == (
        "SELECT CAST(s.order_id AS CHAR), CAST(amount AS CHAR)"
    )
    assert translate(committed("b")) == "UNIX_TIMESTAMP(b.created_at)"

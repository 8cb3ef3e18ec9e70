"""The soak's checker on hand-made histories: each rule catches the fault it names."""

from __future__ import annotations

import json
from typing import Any

from .checker import (
    IN_FLIGHT,
    OutboxRow,
    PoisonTask,
    RecordState,
    Snapshot,
    TaskRecord,
    Verdict,
    check,
    describe,
)
from .doors import DOORS, Effect, by_name, problem_code
from .workload import Attempt, Op

TTL = 60.0
PROBLEM = "application/problem+json"


def _order_body(row_id: int, token: str) -> bytes:
    return json.dumps({"id": row_id, "item": f"soak {token}", "quantity": 1}).encode()


def _op(op_id: int, *answers: Attempt, user: int = 1, door: str = "orders", **fields: Any) -> Op:
    values: dict[str, Any] = {
        "kind": "new",
        "key": f"k{op_id}",
        "token": f"o{op_id}",
        "reference": None,
        "path": f"/api/{door}/",
        "body": b"{}",
        "origin": None,
    }
    values.update(fields)
    op = Op(id=op_id, client=0, user=user, door=door, started=1.0, **values)
    op.attempts = list(answers)
    for index, attempt in enumerate(op.attempts):
        if attempt.status is not None and attempt.status < 500:
            op.answer, op.finished = index, attempt.done
            break
    return op


def _answer(
    status: int, body: bytes, *, at: float = 2.0, content_type: str = "application/json"
) -> Attempt:
    return Attempt(
        server="a", sent=at, done=at + 0.1, status=status, body=body, content_type=content_type
    )


def _row(
    row_id: int,
    token: str,
    *,
    user: int = 1,
    door: str = "orders",
    at: float = 0.0,
    reference: str | None = None,
) -> Effect:
    return Effect(door, row_id, user, token, reference, at)


def _check(ops: list[Op], rows: list[Effect], records: list[RecordState] | None = None) -> Verdict:
    effects: dict[str, list[Effect]] = {door.name: [] for door in DOORS}
    for row in rows:
        effects[row.door].append(row)
    return check(ops, Snapshot(effects=effects, records=records or []), DOORS, TTL)


def test_a_clean_history_passes() -> None:
    first = _answer(201, _order_body(10, "o1"))
    replay = _answer(201, _order_body(10, "o1"), at=3.0)
    verdict = _check(
        [_op(1, first, replay)], [_row(10, "o1")], [RecordState(1, "completed", 1, 0, 1, 0)]
    )
    assert verdict.ok, describe(verdict, [])
    assert verdict.counts["acknowledged (2xx)"] == 1


def test_an_acknowledged_operation_without_its_row_is_lost() -> None:
    verdict = _check([_op(1, _answer(201, _order_body(10, "o1")))], [])
    assert verdict.by_rule() == {"lost": 1}


def test_two_rows_for_one_request_are_a_duplicate_unless_a_ttl_apart() -> None:
    op = _op(1, Attempt(server="a", sent=1.0, done=2.0, error="TimeoutError"))
    assert _check([op], [_row(10, "o1"), _row(11, "o1", at=5.0)]).by_rule() == {"duplicated": 1}
    assert _check([op], [_row(10, "o1"), _row(11, "o1", at=TTL + 1)]).ok


def test_an_answer_naming_someone_elses_row_is_misdelivered() -> None:
    op = _op(1, _answer(201, _order_body(10, "o1")), user=1)
    assert _check([op], [_row(10, "o1", user=2)]).by_rule() == {"misdelivered": 1}
    other = _op(2, _answer(201, _order_body(10, "o1")), user=1, token="o2")
    assert _check([other], [_row(10, "o1")]).by_rule() == {"misdelivered": 1}


def test_a_replay_that_differs_from_the_first_answer() -> None:
    first = _answer(201, _order_body(10, "o1"))
    replay = _answer(201, _order_body(10, "o1") + b" ", at=3.0)
    assert _check([_op(1, first, replay)], [_row(10, "o1")]).by_rule() == {"replay-differs": 1}


def test_a_key_reused_with_another_body_must_not_run() -> None:
    first = _op(1, _answer(201, _order_body(10, "o1")))
    reuse = _op(
        2, _answer(201, _order_body(11, "o2")), key="k1", token="o2", kind="key-reuse", origin=1
    )
    verdict = _check([first, reuse], [_row(10, "o1"), _row(11, "o2")])
    assert verdict.by_rule() == {"key-ran-twice": 2}
    refused = _op(
        2,
        _answer(422, b"{}", content_type=PROBLEM),
        key="k1",
        token="o2",
        kind="key-reuse",
        origin=1,
    )
    assert _check([first, refused], [_row(10, "o1")]).ok


def test_one_success_per_reference() -> None:
    def pay(op_id: int, row_id: int, amount: str) -> Op:
        body = json.dumps({"id": row_id, "order": 7, "amount": amount}).encode()
        return _op(op_id, _answer(201, body), door="payments", token=amount, reference="order:7")

    ops = [pay(1, 20, "1.00"), pay(2, 21, "2.00")]
    rows = [
        _row(20, "1.00", door="payments", reference="order:7"),
        _row(21, "2.00", door="payments", reference="order:7"),
    ]
    assert _check(ops, rows).by_rule() == {"reference-twice": 1}


def test_every_5xx_is_problem_json() -> None:
    html = _answer(500, b"<h1>Server Error</h1>", content_type="text/html")
    clean = _answer(503, json.dumps({"status": 503}).encode(), content_type=PROBLEM)
    assert _check([_op(1, html, clean)], []).by_rule() == {"unclean-5xx": 1}


def test_records_left_in_flight_and_counters_that_disagree_with_events() -> None:
    records = [RecordState(1, "in_flight", 0, 0, 0, 0), RecordState(2, "completed", 3, 1, 2, 1)]
    assert _check([], [], records).by_rule() == {"in-flight": 1, "counters": 1}


def test_describe_names_the_offending_operations() -> None:
    ops = [_op(1, _answer(201, _order_body(10, "o1")))]
    text = describe(_check(ops, []), ops)
    assert "[lost]" in text
    assert "op 1 (new" in text


def test_a_held_record_is_settled_and_its_purged_events_are_not_counted() -> None:
    # The purge keeps a record that holds a business reference as "held", without its events.
    records = [RecordState(1, "held", 2, 1, 0, 0)]
    assert _check([], [], records).ok


def _see_other(order: int) -> Attempt:
    # What the history keeps of the checkout form's 303: its status and Location.
    record = by_name("checkout").record
    return _answer(303, record(303, {"location": f"/shop/orders/{order}/"}, b""), at=2.0)


def test_the_checkout_forms_303_names_its_order_and_replays_its_location() -> None:
    clean = _op(1, _see_other(10), _see_other(10), door="checkout")
    assert _check([clean], [_row(10, "o1", door="checkout")]).ok
    # Another user's order behind the Location; a replay that points elsewhere.
    theirs = _op(2, _see_other(11), door="checkout")
    moved = _op(3, _see_other(12), _see_other(13), door="checkout")
    rows = [_row(11, "o2", user=2, door="checkout"), _row(12, "o3", door="checkout")]
    rows.append(_row(13, "o3b", door="checkout"))
    assert _check([theirs, moved], rows).by_rule() == {
        "misdelivered": 2,  # user 2's order, and order 13 is another request's
        "replay-differs": 1,
    }


def test_a_second_refund_of_one_payment_breaks_the_reference_rule() -> None:
    rows = [
        _row(1, "5:1.00", door="refunds", reference="payment:5"),
        _row(2, "5:0.50", door="refunds", reference="payment:5", at=1.0),
    ]
    assert _check([], rows).by_rule() == {"reference-twice": 1}


def _ship(op_id: int, order: int, task: str, *, user: int = 1) -> Op:
    body = json.dumps({"task_id": task}).encode()
    return _op(
        op_id,
        _answer(202, body),
        user=user,
        door="ship",
        token=str(order),
        reference=f"order:{order}",
        path=f"/api/orders/{order}/ship/",
        body=b"",
    )


def _shipment(
    row_id: int, order: int, task: str | None, *, user: int = 1, at: float = 0.0
) -> Effect:
    return Effect("ship", row_id, user, str(order), f"order:{order}", at, task)


def test_a_202_is_kept_by_the_shipment_its_own_task_made() -> None:
    assert _check([_ship(1, 7, "t-7")], [_shipment(1, 7, "t-7")]).ok
    # Accepted, but no task ever shipped the order (a message lost after the commit); an
    # operation is flagged once, however many of its answers said so.
    assert _check([_ship(1, 7, "t-7")], []).by_rule() == {"lost": 1}
    accepted_twice = _ship(1, 7, "t-7")
    accepted_twice.attempts.append(_answer(202, accepted_twice.attempts[0].body, at=3.0))
    assert _check([accepted_twice], []).by_rule() == {"lost": 1}
    # The order shipped, by a task other than the one the answer named (and that no run that
    # committed sent: the only request was answered, with t-7).
    assert _check([_ship(1, 7, "t-7")], [_shipment(1, 7, "t-other")]).by_rule() == {
        "lost": 1,
        "rolled-back-sent": 1,
    }
    # The answer named the task that shipped another user's order.
    theirs = [_shipment(1, 8, "t-8", user=2)]
    assert _check([_ship(1, 7, "t-8")], theirs).by_rule() == {"misdelivered": 1}


def test_one_shipment_and_one_booking_per_order_even_a_ttl_apart() -> None:
    # A held reference forbids a second shipment for good: no "a TTL later" allowance here.
    shipments = [_shipment(1, 7, "t-7"), _shipment(2, 7, None, at=TTL + 1)]
    assert _check([_ship(1, 7, "t-7")], shipments).by_rule() == {
        "duplicated": 1,
        "reference-twice": 1,
    }
    bookings = [
        Effect("carrier", 1, 1, "7", "order:7", 0.0),
        Effect("carrier", 2, 1, "7", "order:7", TTL + 1),
    ]
    assert _check([], bookings).by_rule() == {"duplicated": 1, "reference-twice": 1}


# -- issued keys: a retry after the key's max age replays; an expired key started nothing -----

MAX_AGE = 4.0


def _transfer_body(row_id: int, token: str) -> bytes:
    return json.dumps({"id": row_id, "amount": "1.00", "to": f"soak {token}"}).encode()


def _expired(at: float) -> Attempt:
    body = json.dumps({"type": "https://x/problems#issued-key-expired", "status": 400}).encode()
    attempt = _answer(400, body, at=at, content_type=PROBLEM)
    attempt.problem = "issued-key-expired"
    return attempt


def _dropped(at: float) -> Attempt:
    return Attempt(server="a", sent=at, done=at + 8.0, error="TimeoutError")


def _transfer(op_id: int, *answers: Attempt, key: str, **fields: Any) -> Op:
    values: dict[str, Any] = {"token": "t1", "path": "/api/transfers/", "key_at": 0.5}
    values.update(fields)
    return _op(op_id, *answers, door="transfers", key=key, **values)


def _issued_check(ops: list[Op], rows: list[Effect]) -> Verdict:
    effects: dict[str, list[Effect]] = {door.name: [] for door in DOORS}
    for row in rows:
        effects[row.door].append(row)
    return check(ops, Snapshot(effects=effects, records=[]), DOORS, TTL, max_age=MAX_AGE)


def test_a_retry_after_an_issued_keys_max_age_that_replays_passes() -> None:
    replayed = _answer(201, _transfer_body(10, "t1"), at=9.0)
    replayed.replayed = True
    op = _transfer(1, _dropped(1.0), replayed, key="i1")
    verdict = _issued_check([op], [_row(10, "t1", door="transfers")])
    assert verdict.ok, describe(verdict, [op])
    assert verdict.counts["retries after the key's max age"] == 1
    assert verdict.counts["... of them replayed"] == 1


def test_an_expired_key_whose_request_ran_then_ran_again_under_a_new_key() -> None:
    # The first attempt ran (its answer was lost); its retry, past the key's max age, was told
    # "nothing ran, get a new key"; done as told, the transfer ran twice.
    first = _transfer(1, _dropped(1.0), _expired(9.5), key="i1")
    again = _transfer(
        2, _answer(201, _transfer_body(11, "t1"), at=10.0), key="i2", kind="rekeyed", origin=1
    )
    rows = [_row(10, "t1", door="transfers"), _row(11, "t1", door="transfers", at=2.0)]
    verdict = _issued_check([first, again], rows)
    assert verdict.by_rule() == {"expired-key-ran": 1, "duplicated": 1}
    assert verdict.violations[-1].ops == (1, 2)


def test_a_key_refused_as_expired_after_it_was_acknowledged() -> None:
    op = _transfer(1, _answer(201, _transfer_body(10, "t1")), _expired(9.0), key="i1")
    verdict = _issued_check([op], [_row(10, "t1", door="transfers")])
    assert verdict.by_rule() == {"expired-key-ran": 1}
    # A TTL after the answer the record is gone: an expired key is then absent by design.
    late = _transfer(1, _answer(201, _transfer_body(10, "t1")), _expired(TTL + 5), key="i1")
    assert _issued_check([late], [_row(10, "t1", door="transfers")]).ok


def test_a_stale_key_refused_as_expired_then_a_new_key_runs_once() -> None:
    stale = _transfer(1, _expired(6.0), key="i1")
    again = _transfer(
        2, _answer(201, _transfer_body(10, "t1"), at=7.0), key="i2", kind="rekeyed", origin=1
    )
    verdict = _issued_check([stale, again], [_row(10, "t1", door="transfers", at=1.0)])
    assert verdict.ok, describe(verdict, [stale, again])
    assert verdict.counts["issued keys refused as expired (nothing ran)"] == 1
    assert verdict.counts["requests sent again under a new key"] == 1
    # A row, but every key of the request was refused: one of them ran after all.
    assert _issued_check([stale], [_row(10, "t1", door="transfers")]).by_rule() == {
        "expired-key-ran": 1
    }


def test_one_stale_key_refused_for_two_bodies_each_sent_again_under_its_own_key() -> None:
    # Seen on a MariaDB soak (seed 847407827): a key another of the principal's clients reused
    # was refused as expired for both bodies; each ran once, under its new key. Nothing ran
    # under the stale key, so it ran no body twice.
    first = _transfer(1, _expired(6.0), key="i1", token="t1")
    shared = _transfer(2, _expired(8.0), key="i1", token="t2", kind="shared-key")
    again = [
        _transfer(
            3,
            _answer(201, _transfer_body(10, "t1"), at=6.5),
            key="i2",
            token="t1",
            kind="rekeyed",
            origin=1,
        ),
        _transfer(
            4,
            _answer(201, _transfer_body(11, "t2"), at=8.5),
            key="i3",
            token="t2",
            kind="rekeyed",
            origin=2,
        ),
    ]
    rows = [_row(10, "t1", door="transfers", at=6.6), _row(11, "t2", door="transfers", at=8.6)]
    verdict = _issued_check([first, shared, *again], rows)
    assert verdict.ok, describe(verdict, [first, shared, *again])
    # Had the stale key run one of them after all, that body has a row too many.
    extra = [*rows, _row(12, "t2", door="transfers", at=8.1)]
    assert "expired-key-ran" in _issued_check([first, shared, *again], extra).by_rule()


def test_the_checkout_forms_expired_page_is_read_as_the_refusal() -> None:
    page = (
        b"<!doctype html><html><head><title>Issued Idempotency-Key expired</title></head>"
        b"<body>...</body></html>"
    )
    assert problem_code(400, "text/html; charset=utf-8", page) == "issued-key-expired"
    assert problem_code(400, "text/html", b"<title>Bad Request</title>") == ""
    problem = json.dumps({"type": "https://x/problems.html#issued-key-expired"}).encode()
    assert problem_code(400, PROBLEM, problem) == "issued-key-expired"
    # A 303 of the form, then a retry refused as expired: the form's order ran.
    refused = _expired(9.0)
    op = _op(1, _see_other(10), refused, door="checkout", key="f1", key_at=0.5)
    rows = [_row(10, "o1", door="checkout")]
    assert _issued_check([op], rows).by_rule() == {"expired-key-ran": 1}


# -- the outbox: every message published, none for a run that rolled back ----------------------


def _outbox_check(ops: list[Op], rows: list[Effect], outbox: list[OutboxRow]) -> Verdict:
    effects: dict[str, list[Effect]] = {door.name: [] for door in DOORS}
    for row in rows:
        effects[row.door].append(row)
    return check(ops, Snapshot(effects=effects, records=[], outbox=outbox), DOORS, TTL)


def test_a_message_left_in_the_outbox_is_flagged_with_the_operation_that_sent_it() -> None:
    ship = _ship(1, 7, "t-7")
    assert _outbox_check([ship], [_shipment(1, 7, "t-7")], []).ok
    # The broker connection was reset right after the publish, and the row stayed (never
    # published again), or it was parked; its 202 is then a task that never ran.
    left = [OutboxRow("t-7", attempts=0), OutboxRow("t-8", attempts=5, parked=True)]
    verdict = _outbox_check([ship], [], left)
    assert verdict.by_rule() == {"outbox-left": 2, "lost": 1}
    assert verdict.violations[1].ops == (1,)  # t-7: the operation whose 202 named it
    assert verdict.counts["task messages left in the outbox"] == 2


def test_a_task_sent_for_a_run_that_rolled_back_is_flagged() -> None:
    # Every request to ship order 7 was answered and none was accepted, yet a task shipped it.
    refused = _op(
        1,
        _answer(422, json.dumps({"status": 422}).encode(), content_type=PROBLEM),
        door="ship",
        token="7",
        reference="order:7",
        path="/api/orders/7/ship/",
    )
    shipped = [_shipment(1, 7, "t-9")]
    assert _outbox_check([refused], shipped, []).by_rule() == {"rolled-back-sent": 1}
    # A request that got no answer may have committed unheard of: its task may ship.
    unheard = _op(
        1, _dropped(1.0), door="ship", token="7", reference="order:7", path="/api/orders/7/ship/"
    )
    assert _outbox_check([unheard], shipped, []).ok
    # The accepted run's own task: fine.
    assert _outbox_check([_ship(1, 7, "t-9")], shipped, []).ok


# -- the doors' fixes: late retries replay, in flight runs once, a poison task ends failed -----


def test_a_retry_after_the_keys_max_age_must_replay_the_stored_answer() -> None:
    first = _answer(201, _transfer_body(10, "t1"), at=1.0)
    replayed = _answer(201, _transfer_body(10, "t1"), at=9.0)
    replayed.replayed = True
    rows = [_row(10, "t1", door="transfers")]
    assert _issued_check([_transfer(1, first, replayed, key="i1")], rows).ok
    # The same answer, but run again rather than replayed (its row since deleted, say).
    ran = _answer(201, _transfer_body(10, "t1"), at=9.0)
    verdict = _issued_check([_transfer(1, first, ran, key="i1")], rows)
    assert verdict.by_rule() == {"late-retry-ran": 1}
    # A TTL after the stored answer it may have expired: a new run is by design.
    later = _answer(201, _transfer_body(10, "t1"), at=TTL + 2.0)
    assert _issued_check([_transfer(1, first, later, key="i1")], rows).ok


def _in_flight(at: float) -> Attempt:
    body = json.dumps({"type": f"https://x/problems#{IN_FLIGHT}", "status": 409}).encode()
    attempt = _answer(409, body, at=at, content_type=PROBLEM)
    attempt.problem, attempt.retry_after = IN_FLIGHT, True
    return attempt


def test_a_request_refused_as_in_flight_runs_once() -> None:
    op = _op(1, _in_flight(1.0), _answer(201, _order_body(10, "o1"), at=2.0))
    assert _check([op], [_row(10, "o1")]).ok
    # Two rows for it, dated a TTL apart (so ``duplicated`` allows them as a re-run after
    # expiry), although every attempt came within 2 s: the refusal led to a second run.
    rows = [_row(10, "o1"), _row(11, "o1", at=TTL + 1)]
    assert _check([op], rows).by_rule() == {"in-flight-ran-twice": 1}
    # Without an in-flight refusal it is ``duplicated``'s to judge (and it allows it).
    plain = _op(1, _answer(201, _order_body(10, "o1"), at=2.0))
    assert _check([plain], rows).ok


def _poison_check(tasks: list[TaskRecord]) -> Verdict:
    effects: dict[str, list[Effect]] = {door.name: [] for door in DOORS}
    snapshot = Snapshot(effects=effects, records=[], tasks=tasks)
    return check([], snapshot, DOORS, TTL, poison=[PoisonTask("p-1")])


def test_a_poison_task_ends_stored_as_failed() -> None:
    failed = TaskRecord("celery:soak.poison", "p-1", "completed", 422)
    verdict = _poison_check([failed])
    assert verdict.ok, describe(verdict, [])
    assert verdict.counts["... stored as failed (422 task-abandoned)"] == 1
    # Still coming back (in flight), never seen, or another task's failure: not ended.
    assert _poison_check([]).by_rule() == {"poison-not-failed": 1}
    in_flight = TaskRecord("celery:soak.poison", "p-1", "in_flight", None)
    assert _poison_check([in_flight]).by_rule() == {"poison-not-failed": 1}
    other = TaskRecord("celery:shop.ship_order", "p-1", "completed", 422)
    assert _poison_check([other]).by_rule() == {"poison-not-failed": 1}

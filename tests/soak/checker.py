"""The checker: reads the whole history and the final database state, and lists every
operation that broke a rule. Pure functions over plain data, so its rules are unit-tested with
hand-made histories (tests/soak/test_checker.py).

Rules, for every operation:
- lost: an acknowledged operation (2xx) whose row is missing (for a door whose row a Celery
  task makes, once the run waited for the tasks);
- duplicated: more than one row for one request (unless the rows are a TTL apart: the first
  record had expired, and an expired key counts as absent by design; never for a door whose
  held reference forbids a second run, such as one shipment per order);
- misdelivered: a 2xx answer (the form's 303) naming another principal's row or another
  request's token;
- replay-differs: an answer stored for a request differs from another answer to it (for a
  redirect: its status and Location);
- key-ran-twice: one key, two bodies, both with effects (a body every attempt of which was
  refused as expired is not the key's: it ran under its new key); or a key reused with another
  body that got a 2xx while the first answer was still stored;
- reference-twice: more than one success for one business reference;
- unclean-5xx: a 5xx that is not application/problem+json;
- in-flight: a record left in flight after the run (a ``held`` one, purged but for its
  business reference, is settled);
- counters: a completed record whose replay or conflict counter disagrees with its events;
- expired-key-ran: an issued key refused as too old (``400 issued-key-expired``, whose text says
  nothing ran) although it had started its operation: an answer under it acknowledged a row, or
  its request has more rows than the keys never refused could have made (the client, told to,
  sent it again under a new key). A retry of what a key started must replay, whatever its age;
- outbox-left: a task message still in the outbox once the run waited for it (parked, or never
  published): its operation committed, its task never went;
- rolled-back-sent: a task that made a row although no operation that committed sent it (its
  id was named by no answer, and every request for its reference got an answer below 500, so
  each run either answered with its own task or rolled back);
- late-retry-ran: a retry sent after its issued key's max age, of an operation whose stored
  answer it had already got, answered by anything but that answer's replay (a stored answer
  expires only a TTL later; a refusal as expired is ``expired-key-ran``'s);
- in-flight-ran-twice: a request refused as in flight (``409``, retry the same) that has more
  than one row although all its attempts fit in a TTL (no record could expire in between);
- poison-not-failed: a task that kills its worker on every delivery (the run's poison task) not
  stored as failed (``422 task-abandoned``) after the run: it came back for ever, or vanished.
  That the other tasks still ran (the queue was not starved) is ``lost``'s to say.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .doors import EXPIRED, Door, Effect
from .workload import Attempt, Op

PROBLEM = "application/problem+json"
#: The package's default ``IDEMPOTENCY_RELEASE_STATUS_CODES``: answers that are not stored.
RELEASED = frozenset({400, 401, 403, 404, 405, 408, 409, 413, 415, 422, 429})
RULES = (
    "lost",
    "duplicated",
    "misdelivered",
    "replay-differs",
    "key-ran-twice",
    "reference-twice",
    "unclean-5xx",
    "in-flight",
    "counters",
    "expired-key-ran",
    "outbox-left",
    "rolled-back-sent",
    "late-retry-ran",
    "in-flight-ran-twice",
    "poison-not-failed",
)
#: The in-flight refusal's problem code (``RequestInFlight``): retry the same request later.
IN_FLIGHT = "idempotency-request-in-flight"
#: The status of a task's operation stored as failed after too many deliveries.
ABANDONED = 422


@dataclass(frozen=True)
class TaskRecord:
    """A Celery task's idempotency record: the task's id is its key."""

    scope: str
    key: str
    state: str
    status: int | None


@dataclass(frozen=True)
class PoisonTask:
    """A task the run sent that kills its worker each time (tests/soak/poison.py)."""

    task_id: str
    scope: str = "celery:soak.poison"


@dataclass(frozen=True)
class RecordState:
    id: int
    state: str
    replay_count: int
    conflict_count: int
    replay_events: int
    conflict_events: int


@dataclass(frozen=True)
class OutboxRow:
    """A task message left in the outbox (``OutboxMessage``) after the run."""

    task_id: str
    attempts: int = 0
    parked: bool = False
    last_error: str = ""


@dataclass
class Snapshot:
    """The database after the run: business rows by door, the idempotency records, and the
    messages left in the outbox."""

    effects: dict[str, list[Effect]]
    records: list[RecordState]
    outbox: list[OutboxRow] = field(default_factory=list)
    tasks: list[TaskRecord] = field(default_factory=list)


@dataclass(frozen=True)
class Violation:
    rule: str
    message: str
    ops: tuple[int, ...] = ()


@dataclass
class Verdict:
    counts: dict[str, int] = field(default_factory=dict)
    violations: list[Violation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def by_rule(self) -> Counter[str]:
        return Counter(violation.rule for violation in self.violations)


def stored(status: int) -> bool:
    return status < 500 and status not in RELEASED


def check(
    ops: list[Op],
    snapshot: Snapshot,
    doors: Iterable[Door],
    ttl: float,
    *,
    max_age: float | None = None,
    poison: Iterable[PoisonTask] = (),
) -> Verdict:
    """Every rule over the whole history and the final state; the verdict lists what broke.
    ``max_age`` is the servers' ``IDEMPOTENCY_ISSUED_KEY_MAX_AGE``; ``poison`` the poison
    tasks the run sent."""
    check = _Check(ops, snapshot, doors, ttl, max_age)
    check.poison = list(poison)
    return check.run()


class _Check:
    def __init__(
        self,
        ops: list[Op],
        snapshot: Snapshot,
        doors: Iterable[Door],
        ttl: float,
        max_age: float | None = None,
    ):
        self.ops, self.snapshot, self.ttl, self.max_age = ops, snapshot, ttl, max_age
        self.doors = {door.name: door for door in doors}
        self.verdict = Verdict()
        self.allowed_reruns = 0
        #: Task rows ``rolled-back-sent`` cannot judge: a request for their reference got a 5xx
        #: or no answer, so a commit the client never heard of may have sent them.
        self.unjudged_tasks = 0
        self.poison: list[PoisonTask] = []
        #: Rows by (door, token) and by (door, what an answer names them by: id or task id).
        self.rows: dict[tuple[str, str], list[Effect]] = defaultdict(list)
        self.by_answer: dict[tuple[str, Any], Effect] = {}
        for name, effects in snapshot.effects.items():
            for effect in effects:
                self.rows[(name, effect.token)].append(effect)
                named = effect.id if effect.answer is None else effect.answer
                self.by_answer[(name, named)] = effect

    def flag(self, rule: str, message: str, *ops: int) -> None:
        self.verdict.violations.append(Violation(rule, message, ops))

    def run(self) -> Verdict:
        self.one_row_per_request()
        self.answers_name_own_rows()
        self.stored_answers_identical()
        self.one_body_per_key()
        self.one_success_per_reference()
        self.server_errors_are_problems()
        self.records_settled()
        self.expired_keys_started_nothing()
        self.outbox_emptied()
        self.tasks_sent_by_commits()
        self.late_retries_replay()
        self.in_flight_runs_once()
        self.poison_stored_as_failed()
        self.verdict.counts = self.counts()
        return self.verdict

    def one_row_per_request(self) -> None:
        """At most one row per request token, unless the first record expired before the next."""
        for (door, token), found in self.rows.items():
            if len(found) < 2:
                continue
            if self.doors[door].rerun_after_expiry and _a_ttl_apart(found, self.ttl):
                self.allowed_reruns += len(found) - 1
                continue
            ids = ", ".join(str(effect.id) for effect in found)
            culprits = [op.id for op in self.ops if op.door == door and op.token == token]
            self.flag("duplicated", f"{door} {token!r}: {len(found)} rows ({ids})", *culprits)

    def answers_name_own_rows(self) -> None:
        """Every 2xx answer names a row that exists, is the principal's own and this request's
        (an operation is flagged once, for its first answer that breaks the rule)."""
        for op in self.ops:
            door = self.doors[op.door]
            for attempt in op.attempts:
                if attempt.status is None or not door.acknowledged(attempt.status):
                    continue
                body = _json(attempt.body)
                named = door.answer_names(body)
                effect = (
                    self.by_answer.get((op.door, named)) if isinstance(named, (int, str)) else None
                )
                if effect is None:
                    # Business rows are never purged: a missing row is lost, whatever its record.
                    self.flag("lost", f"{op.door} {op.token!r}: answered {named!r}, no row", op.id)
                elif effect.owner != op.user:
                    message = f"user {op.user} got user {effect.owner}'s {op.door} {effect.id}"
                    self.flag("misdelivered", message, op.id)
                elif door.answer_token(body) not in (None, op.token) or effect.token != op.token:
                    message = f"{op.door} {op.token!r} answered with {effect.token!r}"
                    self.flag("misdelivered", message, op.id)
                else:
                    continue
                break

    def stored_answers_identical(self) -> None:
        """Answers stored for one request (principal, door, body) are all the same bytes."""
        groups: dict[tuple[int, str, str], list[tuple[Op, Attempt]]] = defaultdict(list)
        for op in self.ops:
            for attempt in op.attempts:
                if op.key is not None and attempt.status is not None and stored(attempt.status):
                    groups[(op.user, op.door, op.token)].append((op, attempt))
        for (_user, door, token), answers in groups.items():
            first_op, first = answers[0]
            for op, attempt in answers[1:]:
                if (attempt.status, attempt.body) == (first.status, first.body):
                    continue
                if attempt.sent - (first_op.finished or first.done) >= self.ttl:
                    continue  # the stored answer had expired: a new run is by design
                message = (
                    f"{door} {token!r}: {first.status} {first.body[:80]!r}, "
                    f"then {attempt.status} {attempt.body[:80]!r}"
                )
                self.flag("replay-differs", message, first_op.id, op.id)
                break

    def one_body_per_key(self) -> None:
        """One key (per principal and door) ran for at most one body; a key reused with another
        body while the first answer was stored never got a 2xx."""
        tokens: dict[tuple[int, str, str], set[str]] = defaultdict(set)
        users: dict[tuple[int, str, str], list[int]] = defaultdict(list)
        for op in self.ops:
            # A request every attempt of which was refused as expired ran nothing under its
            # key (``expired-key-ran`` holds it to that): its body, sent again under a new key,
            # ran there.
            if op.key is not None and not _only_refused_as_expired(op):
                tokens[(op.user, op.door, op.key)].add(op.token)
                users[(op.user, op.door, op.key)].append(op.id)
        for group, seen in tokens.items():
            door, key = group[1], group[2]
            ran = sorted(token for token in seen if self.rows.get((door, token)))
            effects = [effect for token in ran for effect in self.rows[(door, token)]]
            if len(ran) > 1 and not _a_ttl_apart(effects, self.ttl):
                self.flag(
                    "key-ran-twice", f"{door} key {key!r}: bodies {ran} all ran", *users[group]
                )
        by_id = {op.id: op for op in self.ops}
        for op in self.ops:
            origin = by_id.get(op.origin) if op.origin is not None else None
            if op.kind != "key-reuse" or origin is None:
                continue
            first, answer = origin.answered, op.answered
            if first is None or first.status is None or not stored(first.status):
                continue
            if answer is None or answer.status is None:
                continue
            if not self.doors[op.door].acknowledged(answer.status):
                continue
            if op.started - (origin.finished or 0.0) < self.ttl:
                message = f"{op.door} key {op.key!r} reused with another body got {answer.status}"
                self.flag("key-ran-twice", message, origin.id, op.id)

    def one_success_per_reference(self) -> None:
        for name, door in self.doors.items():
            if not door.unique_reference:
                continue
            per_reference: dict[str, list[Effect]] = defaultdict(list)
            for effect in self.snapshot.effects.get(name, []):
                if effect.reference is not None:
                    per_reference[effect.reference].append(effect)
            for reference, found in per_reference.items():
                rerun = door.rerun_after_expiry and _a_ttl_apart(found, self.ttl)
                if len(found) > 1 and not rerun:
                    culprits = [
                        op.id for op in self.ops if op.door == name and op.reference == reference
                    ]
                    message = f"{name} {reference}: {len(found)} successes"
                    self.flag("reference-twice", message, *culprits)

    def server_errors_are_problems(self) -> None:
        for op in self.ops:
            for attempt in op.attempts:
                if (attempt.status or 0) < 500 or _is_problem(attempt):
                    continue
                message = f"{attempt.status} {attempt.content_type!r} {attempt.body[:120]!r}"
                self.flag("unclean-5xx", message, op.id)

    def records_settled(self) -> None:
        """After the run: no record in flight, and counters equal to their events.

        A ``held`` record (its TTL passed, the purge stripped it down to the reference it holds)
        is settled; the strip deleted its events, so its counters have nothing to agree with.
        """
        for record in self.snapshot.records:
            if record.state == "held":
                continue
            if record.state != "completed":
                self.flag("in-flight", f"record {record.id} left {record.state}")
            counters = (record.replay_count, record.conflict_count)
            events = (record.replay_events, record.conflict_events)
            if counters != events:
                message = f"record {record.id}: counters {counters}, events {events}"
                self.flag("counters", message)

    def expired_keys_started_nothing(self) -> None:
        """A key refused as expired had started nothing: a retry of what it started replays."""
        keys: dict[tuple[int, str, str], list[Op]] = defaultdict(list)
        for op in self.ops:
            if op.key is not None and self.doors[op.door].issued:
                keys[(op.user, op.door, op.key)].append(op)
        refused, flagged = set(), set()
        for group, members in keys.items():
            door = self.doors[group[1]]
            answered = [(op, a) for op in members for a in op.attempts if a.status is not None]
            acked = [a.done for _op, a in answered if door.acknowledged(a.status or 0)]
            first_ack = min(acked) if acked else None
            # A refusal a TTL after the answer found the record expired: absent by design.
            expired = [
                a
                for _op, a in answered
                if a.problem == EXPIRED and (first_ack is None or a.sent - first_ack < self.ttl)
            ]
            if not expired:
                continue
            refused.add(group)
            if first_ack is not None:
                flagged.add(group)
                message = f"{door.name} key {group[2]!r}: acknowledged, then refused as expired"
                self.flag("expired-key-ran", message, *sorted({op.id for op in members}))
        # One request (its token), sent under a new key each time the last was refused.
        requests: dict[tuple[str, str], set[tuple[int, str, str]]] = defaultdict(set)
        culprits: dict[tuple[str, str], list[int]] = defaultdict(list)
        for group, members in keys.items():
            for op in members:
                requests[(op.door, op.token)].add(group)
                culprits[(op.door, op.token)].append(op.id)
        for request, used in requests.items():
            may_run = len(used - refused)
            found = self.rows.get(request, [])
            if used & refused - flagged and len(found) > may_run:
                message = (
                    f"{request[0]} {request[1]!r}: {len(found)} rows, {len(used & refused)} of "
                    f"its {len(used)} keys refused as expired"
                )
                self.flag("expired-key-ran", message, *sorted(set(culprits[request])))

    def outbox_emptied(self) -> None:
        """Every message the outbox took was published once the run waited for it."""
        named: dict[str, list[int]] = defaultdict(list)
        for op in self.ops:
            door = self.doors[op.door]
            for attempt in op.attempts:
                if attempt.status is not None and door.acknowledged(attempt.status):
                    named[str(door.answer_names(_json(attempt.body)))].append(op.id)
        for row in self.snapshot.outbox:
            state = "parked" if row.parked else "never published"
            message = (
                f"outbox message {row.task_id}: {state}, {row.attempts} failed attempt(s) "
                f"{row.last_error[:80]!r}"
            )
            self.flag("outbox-left", message, *sorted(set(named.get(row.task_id, []))))

    def tasks_sent_by_commits(self) -> None:
        """A task that made a row was sent by a run that committed: an answer named it, or a
        request for its reference went unanswered (a commit the client never heard of)."""
        for name, door in self.doors.items():
            if not door.deferred:
                continue
            ops = [op for op in self.ops if op.door == name]
            named = {
                door.answer_names(_json(attempt.body))
                for op in ops
                for attempt in op.attempts
                if attempt.status is not None and door.acknowledged(attempt.status)
            }
            unknown = {
                op.reference
                for op in ops
                for attempt in op.attempts
                if attempt.status is None or attempt.status >= 500
            }
            for effect in self.snapshot.effects.get(name, []):
                if effect.answer is None or effect.answer in named:
                    continue
                if effect.reference in unknown:
                    self.unjudged_tasks += 1
                    continue
                message = (
                    f"{name} {effect.reference}: task {effect.answer} made row {effect.id}; no "
                    "answer named it, and every request for it was answered"
                )
                culprits = [op.id for op in ops if op.reference == effect.reference]
                self.flag("rolled-back-sent", message, *culprits)

    def late_retries_replay(self) -> None:
        """A retry after the key's max age, once the operation's answer was stored, replays it."""
        if self.max_age is None:
            return
        for op in self.ops:
            if op.key_at is None or op.answered is None:
                continue
            first = op.answered
            if first.status is None or not stored(first.status):
                continue
            for attempt in op.attempts[(op.answer or 0) + 1 :]:
                late = attempt.sent - op.key_at > self.max_age
                if not late or attempt.status is None or attempt.status >= 500:
                    continue
                if attempt.sent - first.done >= self.ttl:
                    continue  # the stored answer had expired
                if attempt.problem == EXPIRED:
                    continue  # expired-key-ran's to judge
                if attempt.replayed and attempt.status == first.status:
                    continue
                message = (
                    f"{op.door} key {op.key!r}: retried {attempt.sent - op.key_at:.1f}s after "
                    f"the key was issued, answered {attempt.status} "
                    f"{'replayed' if attempt.replayed else 'not replayed'} (stored: {first.status})"
                )
                self.flag("late-retry-ran", message, op.id)
                break

    def in_flight_runs_once(self) -> None:
        """A request once refused as in flight ran at most once while no record could expire."""
        attempts: dict[tuple[str, str], list[tuple[Op, Attempt]]] = defaultdict(list)
        for op in self.ops:
            for attempt in op.attempts:
                attempts[(op.door, op.token)].append((op, attempt))
        for request, seen in attempts.items():
            if not any(a.problem == IN_FLIGHT for _op, a in seen):
                continue
            found = self.rows.get(request, [])
            span = max(a.done for _op, a in seen) - min(a.sent for _op, a in seen)
            if len(found) > 1 and span < self.ttl:
                message = (
                    f"{request[0]} {request[1]!r}: refused as in flight, then {len(found)} rows "
                    f"within {span:.1f}s"
                )
                self.flag("in-flight-ran-twice", message, *sorted({op.id for op, _a in seen}))

    def poison_stored_as_failed(self) -> None:
        """Each poison task's operation ends stored as failed (422), visible in its record."""
        records = {(task.scope, task.key): task for task in self.snapshot.tasks}
        for poison in self.poison:
            record = records.get((poison.scope, poison.task_id))
            if record is not None and record.state == "completed" and record.status == ABANDONED:
                continue
            state = "no record" if record is None else f"{record.state}, {record.status}"
            self.flag("poison-not-failed", f"poison task {poison.task_id}: {state}")

    def counts(self) -> dict[str, int]:
        attempts = [attempt for op in self.ops for attempt in op.attempts]
        rules = self.verdict.by_rule()
        return {
            "operations": len(self.ops),
            "acknowledged (2xx)": sum(
                op.answered is not None
                and self.doors[op.door].acknowledged(op.answered.status or 0)
                for op in self.ops
            ),
            "definite answers": sum(op.answer is not None for op in self.ops),
            "gave up (no definite answer before the deadline)": sum(
                op.answer is None for op in self.ops
            ),
            "requests": len(attempts),
            "requests without an answer": sum(attempt.status is None for attempt in attempts),
            "replayed answers": sum(attempt.replayed for attempt in attempts),
            "5xx answers": sum((attempt.status or 0) >= 500 for attempt in attempts),
            "business rows checked": sum(len(rows) for rows in self.snapshot.effects.values()),
            "records checked": len(self.snapshot.records),
            "re-runs after expiry (allowed)": self.allowed_reruns,
            **self.issued_key_counts(),
            "task messages left in the outbox": len(self.snapshot.outbox),
            "task rows whose sender's outcome nobody heard (not judged by rolled-back-sent)": (
                self.unjudged_tasks
            ),
            "in-flight refusals (409)": sum(attempt.problem == IN_FLIGHT for attempt in attempts),
            "poison tasks sent (each kills its worker)": len(self.poison),
            "... stored as failed (422 task-abandoned)": sum(
                any(
                    (task.scope, task.key) == (poison.scope, poison.task_id)
                    and task.status == ABANDONED
                    for task in self.snapshot.tasks
                )
                for poison in self.poison
            ),
            **{f"violations: {rule}": rules[rule] for rule in RULES},
        }

    def issued_key_counts(self) -> dict[str, int]:
        """How often the max age of issued keys came into play."""
        attempts = [
            (op, index, attempt)
            for op in self.ops
            if self.doors[op.door].issued
            for index, attempt in enumerate(op.attempts)
        ]
        refused = [a for _op, _i, a in attempts if a.problem == EXPIRED]
        counts = {
            "issued keys refused as expired (nothing ran)": len(refused),
            "requests sent again under a new key": sum(op.kind == "rekeyed" for op in self.ops),
        }
        if self.max_age is not None:
            late = [
                a
                for op, index, a in attempts
                if index > 0 and op.key_at is not None and a.sent - op.key_at > self.max_age
            ]
            counts["retries after the key's max age"] = len(late)
            counts["... of them replayed"] = sum(a.replayed for a in late)
        return counts


def _only_refused_as_expired(op: Op) -> bool:
    """Whether every attempt of ``op`` was answered, each by the refusal of its key as expired."""
    return bool(op.attempts) and all(attempt.problem == EXPIRED for attempt in op.attempts)


def _a_ttl_apart(found: list[Effect], ttl: float) -> bool:
    times = sorted(effect.created_at for effect in found)
    return all(later - earlier >= ttl for earlier, later in itertools.pairwise(times))


def _is_problem(attempt: Attempt) -> bool:
    if not attempt.content_type.startswith(PROBLEM):
        return False
    return _json(attempt.body).get("status") == attempt.status


def _json(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def describe(verdict: Verdict, ops: list[Op], *, limit: int = 20) -> str:
    """The summary, then each violation with the full history of the operations involved."""
    lines = ["checker:"]
    lines += [f"  {name}: {value:,}" for name, value in verdict.counts.items()]
    if verdict.ok:
        lines.append("  verdict: OK, no violation")
        return "\n".join(lines)
    lines.append(f"  verdict: {len(verdict.violations)} VIOLATIONS")
    ops_by_id = {op.id: op for op in ops}
    for violation in verdict.violations[:limit]:
        lines.append(f"- [{violation.rule}] {violation.message}")
        for op_id in violation.ops[:6]:
            op = ops_by_id[op_id]
            lines.append(
                f"    op {op.id} ({op.kind}, client {op.client}, user {op.user}) {op.door} "
                f"key={op.key!r} token={op.token!r} ref={op.reference} body={op.body!r}"
            )
            for attempt in op.attempts:
                replayed = "replayed " if attempt.replayed else ""
                answer = (
                    f"{attempt.status} {replayed}{attempt.body[:100]!r}"
                    if attempt.status is not None
                    else f"no answer ({attempt.error})"
                )
                lines.append(
                    f"      {attempt.sent:8.3f}-{attempt.done:8.3f}s {attempt.server}: {answer}"
                )
    if len(verdict.violations) > limit:
        lines.append(f"... and {len(verdict.violations) - limit} more")
    return "\n".join(lines)

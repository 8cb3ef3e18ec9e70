"""The checker: reads the whole history and the final database state, and lists every
operation that broke a rule. Pure functions over plain data, so its rules are unit-tested with
hand-made histories (tests/soak/test_checker.py).

Rules, for every operation:
- lost: an acknowledged operation (2xx) whose row is missing;
- duplicated: more than one row for one request (unless the rows are a TTL apart: the first
  record had expired, and an expired key counts as absent by design);
- misdelivered: a 2xx answer naming another principal's row or another request's token;
- replay-differs: an answer stored for a request differs from another answer to it;
- key-ran-twice: one key, two bodies, both with effects; or a key reused with another body that
  got a 2xx while the first answer was still stored;
- reference-twice: more than one success for one business reference;
- unclean-5xx: a 5xx that is not application/problem+json;
- in-flight: a record left in flight after the run;
- counters: a record whose replay or conflict counter disagrees with its events.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .doors import Door, Effect
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
)


@dataclass(frozen=True)
class RecordState:
    id: int
    state: str
    replay_count: int
    conflict_count: int
    replay_events: int
    conflict_events: int


@dataclass
class Snapshot:
    """The database after the run: business rows by door, and the idempotency records."""

    effects: dict[str, list[Effect]]
    records: list[RecordState]


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


def check(ops: list[Op], snapshot: Snapshot, doors: Iterable[Door], ttl: float) -> Verdict:
    verdict = Verdict()
    flag = verdict.violations.append
    doors_by_name = {door.name: door for door in doors}
    rows: dict[tuple[str, str], list[Effect]] = defaultdict(list)
    by_id: dict[tuple[str, int], Effect] = {}
    for name, effects in snapshot.effects.items():
        for effect in effects:
            rows[(name, effect.token)].append(effect)
            by_id[(name, effect.id)] = effect

    # Rows per request token: at most one, unless the first record expired before the next.
    allowed_reruns = 0
    for (door, token), found in rows.items():
        if len(found) > 1:
            if _a_ttl_apart(found, ttl):
                allowed_reruns += len(found) - 1
                continue
            ids = ", ".join(str(effect.id) for effect in found)
            culprits = tuple(op.id for op in ops if op.door == door and op.token == token)
            flag(Violation("duplicated", f"{door} {token!r}: {len(found)} rows ({ids})", culprits))

    # Every 2xx answer names a row that exists, is the principal's own, and is this request's.
    acknowledged = 0
    for op in ops:
        if op.answered is not None and 200 <= (op.answered.status or 0) < 300:
            acknowledged += 1
        for attempt in op.attempts:
            if attempt.status is None or not 200 <= attempt.status < 300:
                continue
            door = doors_by_name[op.door]
            body = _json(attempt.body)
            row_id = body.get("id")
            effect = by_id.get((op.door, int(row_id))) if isinstance(row_id, int) else None
            if effect is None:
                # Business rows are never purged: a missing row is lost, whatever its record.
                flag(Violation("lost", f"{op.door} {op.token!r}: answered id {row_id}, no such row", (op.id,)))
                continue
            if effect.owner != op.user:
                flag(Violation("misdelivered", f"user {op.user} got user {effect.owner}'s {op.door} {effect.id}", (op.id,)))
            elif door.answer_token(body) != op.token or effect.token != op.token:
                flag(Violation("misdelivered", f"{op.door} {op.token!r} answered with {effect.token!r} ({effect.id})", (op.id,)))

    # Answers stored for one request (one principal, door and body) are all the same bytes.
    groups: dict[tuple[int, str, str], list[tuple[Op, Attempt]]] = defaultdict(list)
    for op in ops:
        if op.key is None:
            continue
        for attempt in op.attempts:
            if attempt.status is not None and stored(attempt.status):
                groups[(op.user, op.door, op.token)].append((op, attempt))
    for (_user, door_name, token), answers in groups.items():
        first_op, first = answers[0]
        for op, attempt in answers[1:]:
            if (attempt.status, attempt.body) != (first.status, first.body):
                if attempt.sent - (first_op.finished or first.done) >= ttl:
                    continue
                flag(Violation("replay-differs", f"{door_name} {token!r}: {first.status} {first.body[:80]!r} then {attempt.status} {attempt.body[:80]!r}", (first_op.id, op.id)))
                break

    # One key (per principal and door) ran for at most one body.
    by_key: dict[tuple[int, str, str], set[str]] = defaultdict(set)
    key_ops: dict[tuple[int, str, str], list[int]] = defaultdict(list)
    for op in ops:
        if op.key is not None:
            by_key[(op.user, op.door, op.key)].add(op.token)
            key_ops[(op.user, op.door, op.key)].append(op.id)
    for group, tokens in by_key.items():
        ran = sorted(token for token in tokens if rows.get((group[1], token)))
        if len(ran) > 1 and not _a_ttl_apart([e for t in ran for e in rows[(group[1], t)]], ttl):
            flag(Violation("key-ran-twice", f"{group[1]} key {group[2]!r}: bodies {ran} all ran", tuple(key_ops[group])))
    ops_by_id = {op.id: op for op in ops}
    for op in ops:
        origin = ops_by_id.get(op.origin) if op.origin is not None else None
        answer = op.answered
        if op.kind != "key-reuse" or origin is None or answer is None or answer.status is None:
            continue
        first = origin.answered
        if first is None or first.status is None or not stored(first.status):
            continue
        if 200 <= answer.status < 300 and op.started - (origin.finished or 0) < ttl:
            flag(Violation("key-ran-twice", f"{op.door} key {op.key!r} reused with another body got {answer.status}", (origin.id, op.id)))

    # One success per business reference.
    for name, door in doors_by_name.items():
        if not door.unique_reference:
            continue
        per_reference: dict[str, list[Effect]] = defaultdict(list)
        for effect in snapshot.effects.get(name, []):
            if effect.reference is not None:
                per_reference[effect.reference].append(effect)
        for reference, found in per_reference.items():
            if len(found) > 1 and not _a_ttl_apart(found, ttl):
                culprits = tuple(op.id for op in ops if op.door == name and op.reference == reference)
                flag(Violation("reference-twice", f"{name} {reference}: {len(found)} successes", culprits))

    # Every 5xx is problem+json.
    server_errors = 0
    for op in ops:
        for attempt in op.attempts:
            if attempt.status is not None and attempt.status >= 500:
                server_errors += 1
                if not _is_problem(attempt):
                    flag(Violation("unclean-5xx", f"{attempt.status} {attempt.content_type!r} {attempt.body[:120]!r}", (op.id,)))

    # The records after the run: none in flight, counters equal to their events.
    for record in snapshot.records:
        if record.state != "completed":
            flag(Violation("in-flight", f"record {record.id} left {record.state}"))
        if (record.replay_count, record.conflict_count) != (record.replay_events, record.conflict_events):
            flag(Violation("counters", f"record {record.id}: counters {record.replay_count}/{record.conflict_count}, events {record.replay_events}/{record.conflict_events}"))

    attempts = [attempt for op in ops for attempt in op.attempts]
    verdict.counts = {
        "operations": len(ops),
        "acknowledged": acknowledged,
        "definite": sum(op.answer is not None for op in ops),
        "gave up": sum(op.answer is None for op in ops),
        "attempts": len(attempts),
        "no answer": sum(attempt.status is None for attempt in attempts),
        "replayed answers": sum(attempt.replayed for attempt in attempts),
        "5xx answers": server_errors,
        "rows checked": sum(len(effects) for effects in snapshot.effects.values()),
        "records checked": len(snapshot.records),
        "re-runs after expiry (allowed)": allowed_reruns,
        **{f"violations: {rule}": verdict.by_rule()[rule] for rule in RULES},
    }
    return verdict


def _a_ttl_apart(found: list[Effect], ttl: float) -> bool:
    times = sorted(effect.created_at for effect in found)
    return all(later - earlier >= ttl for earlier, later in zip(times, times[1:]))


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
                answer = (
                    f"{attempt.status} {'replayed ' if attempt.replayed else ''}{attempt.body[:100]!r}"
                    if attempt.status is not None
                    else f"no answer ({attempt.error})"
                )
                lines.append(f"      {attempt.sent:8.3f}-{attempt.done:8.3f}s {attempt.server}: {answer}")
    if len(verdict.violations) > limit:
        lines.append(f"... and {len(verdict.violations) - limit} more")
    return "\n".join(lines)

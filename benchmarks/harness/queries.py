"""What one request sends to PostgreSQL: Django's statements and the protocol's round trips.

``CaptureQueriesContext`` lists the statements Django executes, but not the BEGIN, COMMIT and
RELEASE SAVEPOINT that psycopg and Django's ``atomic`` send on their own. libpq's protocol trace
sees every message, so the round trips counted here are what the network actually carries.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass

from django.db import connection
from django.test.utils import CaptureQueriesContext

from .clients import InProcess
from .variants import Variant, order_body

_PARSE = re.compile(r'^"[^"]*" "(?P<sql>.*)" \d+')


@dataclass(frozen=True)
class PathTrace:
    variant: Variant
    path: str  # "first", "replay", "mismatch", "create"
    status: int
    statements: list[str]  # as Django captured them, parameters interpolated
    round_trips: list[str]  # one line per client->server round trip, from the libpq trace
    durable_commits: int  # commits of transactions that wrote: each waits for a WAL flush


def trace_request(
    client: InProcess, variant: Variant, path_name: str, body: bytes, key: str | None
) -> PathTrace:
    from psycopg import pq

    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    with tempfile.NamedTemporaryFile("w+", suffix=".trace") as trace_file:
        descriptor = os.dup(trace_file.fileno())
        pgconn.trace(descriptor)
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            with CaptureQueriesContext(connection) as captured:
                reply = client.post(variant.path, body, key)
        finally:
            pgconn.untrace()
            with contextlib.suppress(OSError):  # psycopg may have closed it already
                os.close(descriptor)
        trace_file.seek(0)
        trace = trace_file.read()
    return PathTrace(
        variant=variant,
        path=path_name,
        status=reply.status,
        statements=[query["sql"] for query in captured.captured_queries],
        round_trips=_round_trips(trace),
        durable_commits=_durable_commits(trace),
    )


def _round_trips(trace: str) -> list[str]:
    """One entry per wait for the server: the statements sent before the client next reads.

    A simple Query, or a Parse/Bind/Execute/Sync batch, is one round trip when sent alone; in
    psycopg 3's pipeline mode several batches leave before any reply is read, and they count
    once (their statements joined with ``+``).
    """
    trips: list[str] = []
    sent: list[str] = []
    for line in trace.splitlines():
        parts = line.split("\t", 3)
        if len(parts) < 3:
            continue
        direction, message = parts[0], parts[2]
        rest = parts[3].strip() if len(parts) > 3 else ""
        if direction == "F":
            if message == "Query":
                sent.append(rest.strip('"'))
            elif message == "Parse":
                match = _PARSE.match(rest)
                sent.append(match.group("sql") if match else rest)
        elif direction == "B" and sent:
            trips.append(" + ".join(sent))
            sent = []
    if sent:
        trips.append(" + ".join(sent))
    return trips


# set_config('synchronous_commit', 'off', ...), or its CASE with the condition bound true.
_RELAXED = re.compile(r"set_config\(\s*'synchronous_commit',\s*(CASE WHEN true\b[^']*)?'off'")
_WRITE_TAGS = ("INSERT", "UPDATE", "DELETE", "MERGE")
_WRITE_WORDS = re.compile(r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\b", re.IGNORECASE)


def _durable_commits(trace: str) -> int:
    """Transactions that changed rows and committed: each one waits for PostgreSQL's WAL flush.

    Read from the server's CommandComplete tags ("UPDATE 0" wrote nothing; a SELECT whose
    data-modifying CTE returned rows did write, and so did a SELECT ... FOR UPDATE that locked
    rows: row locks are WAL-logged), grouped by BEGIN ... COMMIT, or one statement per
    transaction outside them (autocommit).
    """
    commits = 0
    in_transaction = wrote = relaxed_transaction = False
    current_sql = ""
    for line in trace.splitlines():
        parts = line.split("\t", 3)
        if len(parts) < 3:
            continue
        direction, message = parts[0], parts[2]
        rest = parts[3].strip() if len(parts) > 3 else ""
        if direction == "F" and message in ("Query", "Parse"):
            match = _PARSE.match(rest) if message == "Parse" else None
            current_sql = match.group("sql") if match else rest.strip('"')
            command = current_sql.strip().upper()
            if command == "BEGIN":
                in_transaction, wrote, relaxed_transaction = True, False, False
            elif command == "COMMIT":
                commits += int(wrote and not relaxed_transaction)
                in_transaction = False
            elif command == "ROLLBACK":
                in_transaction = False
        elif direction == "B" and message == "DataRow":
            # The one-statement replay returns what it set synchronous_commit to: 'off' only
            # when it found and counted a record (its condition is not in the text).
            if in_transaction and "synchronous_commit" in current_sql and "'off'" in rest:
                relaxed_transaction = True
        elif direction == "B" and message == "CommandComplete":
            tag = rest.strip('"').split()
            rows = int(tag[-1]) if tag and tag[-1].isdigit() else 0
            writes = (
                bool(tag)
                and rows > 0
                and (tag[0] in _WRITE_TAGS or bool(_WRITE_WORDS.search(current_sql)))
            )
            # A transaction that set synchronous_commit off for itself commits without the wait.
            relaxed = bool(_RELAXED.search(current_sql)) and "EXISTS (SELECT FROM found)" not in (
                current_sql
            )
            if in_transaction and relaxed:
                relaxed_transaction = True  # set_config(..., true) lasts until the COMMIT
            if writes and in_transaction:
                wrote = True
            elif writes and not relaxed:
                commits += 1
    return commits


def trace_paths(client: InProcess, variants: tuple[Variant, ...]) -> list[PathTrace]:
    """First request, replay (and mismatch for the idempotent ones) of every variant."""
    traces: list[PathTrace] = []
    for variant in variants:
        body = order_body(f"trace-{variant.slug}")
        if not variant.idempotent:
            traces.append(trace_request(client, variant, "create", body, None))
            continue
        key = variant.new_key()
        # Warm the view's code paths once on another key, so no first-use lookups are traced.
        client.post(variant.path, order_body(f"trace-warm-{variant.slug}"), variant.new_key())
        traces.append(trace_request(client, variant, "first", body, key))
        traces.append(trace_request(client, variant, "replay", body, key))
        mismatch = order_body(f"trace-other-{variant.slug}")
        traces.append(trace_request(client, variant, "mismatch", mismatch, key))
    return traces

"""The attribution as Markdown: each path's cost by statement, and what each piece of the gap
to the targets is (harness/attribution.py measures it)."""

from __future__ import annotations

from collections.abc import Sequence

from .attribution import PathCost

TARGETS = {"new key": ("bare create", 1.25), "replay": ("authenticated no-op", 1.10)}
PACKAGE = "django-idempotency's own Python"
OTHER = "Django, DRF and the door's Python around it"
DURABLE_PAIR = ("COMMIT", "order INSERT (the view)")
DURABLE = "COMMIT + the view's INSERT (where the WAL flush is)"


def _opt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _summary_table(paths: Sequence[PathCost]) -> list[str]:
    rows = [
        "| path | median ms | mean ms | statements (+ COMMIT) | in Django's cursor ms | on the "
        "server ms (exec + plan) | WAL bytes | package's Python ms | the view ms | the rest ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for path in paths:
        trips = sum(s.calls for s in path.statements if s.client_ms is not None)
        wals = [s.wal_bytes for s in path.statements if s.wal_bytes is not None]
        server = f"{path.server_ms:.3f}" if path.server_available else "n/a"
        rows.append(
            f"| {path.name} | {path.median_ms:.2f} | {path.mean_ms:.2f} | {trips:.0f} | "
            f"{path.client_db_ms:.2f} | {server} | "
            f"{f'{sum(wals):.0f}' if wals else 'n/a'} | {_opt(path.package_ms, 2)} | "
            f"{_opt(path.view_ms, 2)} | {path.rest_ms:.2f} |"
        )
    return rows


def _statement_table(path: PathCost) -> list[str]:
    rows = [
        f"**{path.name}** ({path.requests} requests, mean {path.mean_ms:.2f} ms)",
        "",
        "| statement | per request | in Django's cursor ms | server execution ms | server "
        "planning ms | WAL bytes |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in path.statements:
        rows.append(
            f"| {s.label} | {s.calls:.2f} | {_opt(s.client_ms)} | {_opt(s.exec_ms)} | "
            f"{_opt(s.plan_ms)} | {_opt(s.wal_bytes, 0)} |"
        )
    return [*rows, ""]


def pieces(path: PathCost, baseline: PathCost) -> list[tuple[str, float, float]]:
    """What ``path`` costs beyond ``baseline``: (piece, client ms, server ms), largest first.

    Statements are compared family by family (a statement both have counts only its
    difference); the package's Python and everything else follow."""
    found: list[tuple[str, float, float]] = []
    labels = dict.fromkeys(
        [s.label for s in path.statements] + [s.label for s in baseline.statements]
    )
    for label in labels:
        ours, theirs = path.statement(label), baseline.statement(label)
        client = (ours.client_ms or 0.0 if ours else 0.0) - (
            theirs.client_ms or 0.0 if theirs else 0.0
        )
        server = sum(
            sign * ((s.exec_ms or 0.0) + (s.plan_ms or 0.0))
            for sign, s in ((1, ours), (-1, theirs))
            if s is not None
        )
        if (
            ours is not None
            and ours.client_ms is None
            and (theirs is None or theirs.client_ms is None)
        ):
            continue  # server-only (BEGIN, a foreign-key check): inside another's client time
        found.append((label, client, server))
    # The bare create's INSERT commits on its own (autocommit): its WAL flush is inside it,
    # where ours is in the COMMIT. Only the two together compare.
    merged: dict[str, tuple[float, float]] = {}
    pair = baseline.statement(DURABLE_PAIR[1]) is not None
    for label, client, server in found:
        if pair and label in DURABLE_PAIR:
            old_client, old_server = merged.get(DURABLE, (0.0, 0.0))
            merged[DURABLE] = (old_client + client, old_server + server)
        else:
            merged[label] = (client, server)
    found = [(label, client, server) for label, (client, server) in merged.items()]
    found.append((PACKAGE, path.package_ms or 0.0, 0.0))
    view_python = (path.view_ms or 0.0) - (path.view_db_ms or 0.0)
    base_view = baseline.rest_ms
    found.append((OTHER, path.rest_ms + view_python - base_view, 0.0))
    return sorted(found, key=lambda piece: -piece[1])


def gap_lines(paths: Sequence[PathCost]) -> list[str]:
    named = {path.name: path for path in paths}
    lines: list[str] = []
    for name, (baseline_name, target) in TARGETS.items():
        path, baseline = named.get(name), named.get(baseline_name)
        if path is None or baseline is None:
            continue
        # The gap by medians, as the targets are; the pieces are means, so that they add up.
        allowed = baseline.median_ms * target
        gap = path.median_ms - allowed
        parts = [p for p in pieces(path, baseline) if abs(p[1]) >= 0.005]
        described = "; ".join(
            f"{label} {client:+.2f} ms"
            + (f" (server {server:+.3f})" if server and abs(server) >= 0.0005 else "")
            + (f", {client / gap:.0%} of the gap" if gap > 0 else "")
            for label, client, server in parts
        )
        head = (
            f"**{name}**: median {path.median_ms:.2f} ms against the {baseline_name}'s "
            f"{baseline.median_ms:.2f} ms ({path.median_ms / baseline.median_ms:.2f}x); the "
            f"target {target:.2f}x allows {allowed:.2f} ms, "
        )
        if gap <= 0:
            lines.append(head + f"met with {-gap:.2f} ms to spare. Beyond it: {described}.")
            continue
        # The fewest pieces, largest first, that would close the gap if each went entirely.
        needed, covered = [], 0.0
        for label, client, _ in parts:
            if covered >= gap or client <= 0:
                break
            needed.append(label)
            covered += client
        verdict = (
            f"removing all of {', '.join(needed)} ({covered:.2f} ms) would close it"
            if covered >= gap
            else f"even removing every piece above ({covered:.2f} ms) would not close it"
        )
        lines.append(
            head + f"so {gap:.2f} ms too much. Beyond the {baseline_name}: {described}. "
            f"The smallest set of whole pieces that closes the gap: {verdict}."
        )
    return lines


def markdown(attributions: dict[str, list[PathCost]], server_note: str) -> list[str]:
    if not attributions:
        return []
    lines = [
        "## Where the time goes (attribution)",
        "",
        "Each path on its own, one batch of requests after a warm-up, in-process (the figures "
        "are means per request, so they add up; the ratios of the tables below come from the "
        "interleaved rounds). **In Django's cursor**: the time inside Django's cursor "
        "`execute` (`connection.execute_wrapper`) around each statement, and the "
        "connection's COMMIT: psycopg's send, parameter quoting, the wait for the server, "
        "result loading; psycopg sends a transaction's `BEGIN` from inside its first "
        "statement, so that statement's time includes BEGIN's round trip. **On the "
        "server**: `pg_stat_statements` (execution and planning time, WAL bytes), reset before "
        f"each batch, on {server_note or 'the benchmark server'}; on MariaDB, performance_schema's "
        "`events_statements_summary_by_digest` (`SUM_TIMER_WAIT`: the whole statement, parsing "
        "and optimising included, so no planning or WAL column), truncated before each batch, on "
        "a private server started for this run with `performance_schema` on (mysqlclient sends "
        "`SET autocommit` outside any cursor: timed around the connection's call, as the "
        "COMMIT). Each backend "
        "against its own bare create and no-op. **The package's Python**: "
        "the time inside `perform_once` minus its statements and minus the view it runs. "
        "**The rest**: everything else (Django's handler, DRF, the door's own work before the "
        "engine: key, scope, fingerprint; the test client).",
        "",
    ]
    for backend, paths in attributions.items():
        lines += [
            f"### {backend}",
            "",
            *_summary_table(paths),
            "",
            "What each gap is made of "
            "(each piece: how much more this path spends on it than its baseline):",
            "",
        ]
        lines += [f"- {line}" for line in gap_lines(paths)]
        lines += ["", "Statement by statement:", ""]
        for path in paths:
            lines += _statement_table(path)
    return lines

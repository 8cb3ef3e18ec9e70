"""Render one run's results as Markdown (docs/benchmarks.md) and as a console summary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .attribution import PathCost
from .attribution_report import markdown as attribution_markdown
from .growth import GrowthRow
from .measure import CREATE, FIRST, REPLAY, Results, Series
from .profiling import ProfileReport
from .queries import PathTrace
from .saturation import Throughput
from .stats import Summary
from .storm import StormResult
from .variants import BARE, BEFORE_24, DOORS, FLOOR, ONE_STATEMENT, OURS, VARIANTS_SHOWN

TARGET_FIRST = 1.25  # of the bare create (issue 14)
TARGET_REPLAY = 1.10  # of the authenticated no-op, the floor of a replay that authenticates
TARGET_REPLAYED_SHARE = 0.95
TARGET_THROUGHPUT = 0.8  # of the bare create's, at saturation


@dataclass
class Run:
    command: str
    quick: bool
    machine: dict[str, str]
    versions: dict[str, str]
    postgres: str
    plan: dict[str, str]
    floor: dict[str, float]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    uptime_before: str = ""
    uptime_after: str = ""
    server_note: str = ""
    #: Per backend ("PostgreSQL 15.20"; MariaDB's once its backend exists): each path's cost.
    attributions: dict[str, list[PathCost]] = field(default_factory=dict)
    inprocess: Results | None = None
    nosync: Results | None = None
    inprocess_series: list[Series] = field(default_factory=list)
    doors: Results | None = None
    doors_series: list[Series] = field(default_factory=list)
    http: Results | None = None
    http_series: list[Series] = field(default_factory=list)
    storms: list[StormResult] = field(default_factory=list)
    throughput: list[Throughput] = field(default_factory=list)
    growth: list[GrowthRow] = field(default_factory=list)
    growth_note: str = ""
    bodies: list[GrowthRow] = field(default_factory=list)
    traces: list[PathTrace] = field(default_factory=list)
    profiles: list[ProfileReport] = field(default_factory=list)
    seconds: float = 0.0
    output: Path | None = None


MODE_LABEL = {CREATE: "no key", FIRST: "new key", REPLAY: "replay"}


def _load(values: tuple[float, float, float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def _ratio(value: float) -> str:
    return f"{value:.2f}x"


def _ms(value: float) -> str:
    return f"{value:.2f}"


def headline(run: Run) -> list[str]:
    """One line per transport: our ratios against the bare create, with the targets."""
    lines = []
    transports = (
        ("in-process", run.inprocess),
        ("HTTP (gunicorn)", run.http),
        ("in-process with synchronous_commit=off", run.nosync),
    )
    for name, results in transports:
        if results is None:
            continue
        bare = results.summary(Series(BARE, CREATE))
        floor = results.summary(Series(FLOOR, CREATE))
        first = results.summary(Series(OURS, FIRST)).ratio_to(bare)
        replay = results.summary(Series(OURS, REPLAY))
        lines.append(
            f"{name}: new key {_ratio(first)} of the bare create (target <= {TARGET_FIRST}x; "
            f"{_ms(bare.median_ms)} ms median), replay {_ratio(replay.ratio_to(floor))} of the "
            f"authenticated no-op (target <= {TARGET_REPLAY}x; {_ms(floor.median_ms)} ms median)"
        )
    if run.doors is not None:
        ratios = {
            (series.variant.slug, series.mode): ratio
            for series, _, ratio in door_rows(run.doors, run.doors_series)
        }
        doors = [
            f"{ours.label} new key {_ratio(ratios[ours.slug, FIRST])}, "
            f"replay {_ratio(ratios[ours.slug, REPLAY])}"
            for _, ours in DOORS
        ]
        lines.append(
            "every door (in-process), each against its own bare variant: " + "; ".join(doors)
        )
    ours = [storm for storm in run.storms if storm.variant == OURS]
    if ours:
        storm = ours[0]
        lines.append(
            f"storm ({storm.keys} keys x {storm.copies} copies): {storm.duplicates} duplicates, "
            f"{storm.replayed_share:.1%} of copies answered 201 replayed "
            f"(target >= {TARGET_REPLAYED_SHARE:.0%}), {storm.conflict_share:.1%} 409, "
            f"p50 {_ms(storm.latency.median_ms)} ms, p99 {_ms(storm.latency.p99_ms)} ms"
        )
    bare_rate = next((t.per_second for t in run.throughput if t.variant == BARE), 0.0)
    ours_rate = next((t.per_second for t in run.throughput if t.variant == OURS), 0.0)
    if bare_rate and ours_rate:
        lines.append(
            f"throughput at saturation (new keys, 4 sync workers): {ours_rate:.0f} requests/s, "
            f"{_ratio(ours_rate / bare_rate)} of the bare create's {bare_rate:.0f} "
            f"(target >= {TARGET_THROUGHPUT}x)"
        )
    return lines


def before_and_after(run: Run) -> list[str]:
    """Issue 24's cuts against the path before them, measured in the same rounds."""
    rows = [
        "| table | request | before issue 24 | now | one-statement replay (measured, not shipped) |"
        " target |",
        "|---|---|---:|---:|---:|---:|",
    ]
    transports = (
        ("in-process", run.inprocess),
        ("HTTP (gunicorn)", run.http),
        ("in-process, synchronous_commit=off", run.nosync),
    )
    for name, results in transports:
        if results is None or not results.samples.get(Series(BEFORE_24, FIRST)):
            continue
        bare = results.summary(Series(BARE, CREATE))
        floor = results.summary(Series(FLOOR, CREATE))
        for mode, baseline, target, against in (
            (FIRST, bare, TARGET_FIRST, "of the bare create"),
            (REPLAY, floor, TARGET_REPLAY, "of the authenticated no-op"),
        ):
            ratios = [
                _ratio(results.summary(Series(variant, mode)).ratio_to(baseline))
                for variant in (BEFORE_24, OURS, ONE_STATEMENT)
            ]
            rows.append(
                f"| {name} | {MODE_LABEL[mode]} ({against}) | {' | '.join(ratios)} | "
                f"<= {target:.2f}x |"
            )
    rates = {t.variant: t.per_second for t in run.throughput}
    if rates.get(BARE) and rates.get(BEFORE_24) and rates.get(OURS):
        ratios = [
            _ratio(rates[variant] / rates[BARE]) if rates.get(variant) else "n/a"
            for variant in (BEFORE_24, OURS, ONE_STATEMENT)
        ]
        rows.append(
            f"| throughput at saturation | new keys (of the bare create's) | "
            f"{' | '.join(ratios)} | >= {TARGET_THROUGHPUT:.2f}x |"
        )
    return rows if len(rows) > 2 else []


def reading(run: Run) -> list[str]:
    """What dominates the numbers on this machine, computed from this run."""
    lines: list[str] = []
    commit = run.floor.get("durable commit (autocommit INSERT)")
    trip = run.floor.get("round trip (SELECT 1)")
    if commit is not None and trip is not None:
        lines.append(
            f"A commit that has to wait for its WAL to reach the disk cost {commit:.2f} ms here, "
            f"a round trip {trip:.3f} ms (both measured back to back before the run; under "
            "load a round trip costs more, since PostgreSQL's backend has to be scheduled). "
            "So the count of durable commits per request (in the SQL section) decides most of "
            "each ratio: the bare create has one."
        )
    for name, results in (("in-process", run.inprocess), ("without the disk wait", run.nosync)):
        if results is None:
            continue
        bare = results.summary(Series(BARE, CREATE))
        floor = results.summary(Series(FLOOR, CREATE))
        if floor.count:
            lines.append(
                f"The authenticated no-op ({name}) costs {_ratio(floor.ratio_to(bare))} of the "
                "bare create: a replay that authenticates first cannot go below that, whatever "
                "it does after."
            )
        replay = results.summary(Series(OURS, REPLAY))
        first = results.summary(Series(OURS, FIRST))
        if floor.count and replay.count and first.count:
            lines.append(
                f"django-idempotency ({name}): the replay costs "
                f"{_ms(replay.median_ms - floor.median_ms)} ms over that no-op (its own work: "
                "key, scope, fingerprint, its claim that inserts nothing, the lookup, BEGIN and "
                "COMMIT), the new key "
                f"{_ms(first.median_ms - bare.median_ms)} ms over the bare create (its extra "
                "round trips: BEGIN, the claim, the view's SAVEPOINT, the stored response, and a "
                "COMMIT where the bare create commits inside its INSERT). Which piece is how "
                "much: the attribution section."
            )
    lines.append(
        "Not in these rows: a view that names a business reference through a serializer related "
        "field (`idempotency_reference_field`) resolves it to the related object's primary key, "
        "which may cost one more `SELECT` per keyed request; the benchmark's endpoint declares "
        "no reference."
    )
    return lines


def _latency_table(results: Results, series_list: Sequence[Series]) -> list[str]:
    bare = results.summary(Series(BARE, CREATE))
    rows = [
        "| variant | request | median ms | p99 ms | median / bare create | p99 / bare p99 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for series in series_list:
        summary = results.summary(series)
        note = ""
        differs = results.replay_differs.get(series, 0)
        if differs:
            note = f" ({differs} replays differed from the first answer)"
        rows.append(
            f"| {series.variant.label} | {MODE_LABEL[series.mode]}{note} | "
            f"{_ms(summary.median_ms)} | {_ms(summary.p99_ms)} | "
            f"{_ratio(summary.ratio_to(bare))} | {_ratio(summary.p99_ms / bare.p99_ms)} |"
        )
    return rows


def door_rows(
    results: Results, series_list: Sequence[Series]
) -> list[tuple[Series, Summary, float]]:
    """Each door's series with its median's ratio to its own bare variant's (no key)."""
    rows = []
    bare: Summary | None = None
    for series in series_list:
        summary = results.summary(series)
        if series.mode == CREATE:
            bare = summary
        assert bare is not None, "each door's bare series comes first"
        rows.append((series, summary, summary.ratio_to(bare)))
    return rows


def _door_table(results: Results, series_list: Sequence[Series]) -> list[str]:
    rows = [
        "| door | request | median ms | p99 ms | median / its bare variant |",
        "|---|---|---:|---:|---:|",
    ]
    for series, summary, ratio in door_rows(results, series_list):
        differs = results.replay_differs.get(series, 0)
        note = f" ({differs} replays differed from the first answer)" if differs else ""
        rows.append(
            f"| {series.variant.label} | {MODE_LABEL[series.mode]}{note} | "
            f"{_ms(summary.median_ms)} | {_ms(summary.p99_ms)} | {_ratio(ratio)} |"
        )
    return rows


def _storm_table(storms: Sequence[StormResult]) -> list[str]:
    rows = [
        "| variant | requests | duplicate rows | max rows per key | 201 first run | "
        "201 replayed | 409 | other | copies answered 201 | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for storm in storms:
        other = sum(count for status, count in storm.statuses.items() if status not in (201, 409))
        other_text = str(other)
        if other:
            detail = ", ".join(
                f"{status}: {count}"
                for status, count in sorted(storm.statuses.items())
                if status not in (201, 409)
            )
            other_text = f"{other} ({detail})"
        if storm.errors:
            other_text += f" + {storm.errors} connection errors"
        rows.append(
            f"| {storm.variant.label} | {storm.requests} | {storm.duplicates} | "
            f"{max(storm.rows_per_key, default=0)} | {storm.fresh} | {storm.replayed} | "
            f"{storm.statuses[409]} | {other_text} | "
            f"{f'{storm.replayed_share:.1%}' if storm.variant.idempotent else 'n/a'} | "
            f"{_ms(storm.latency.median_ms)} | {_ms(storm.latency.p99_ms)} |"
        )
    return rows


def _growth_table(rows: Sequence[GrowthRow], first_column: str) -> list[str]:
    lines = [
        f"| {first_column} | bare create median (p99) ms | new key median (p99) ms | "
        "new key / bare | replay median (p99) ms | replay / bare |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.label} | {_ms(row.create.median_ms)} ({_ms(row.create.p99_ms)}) | "
            f"{_ms(row.first.median_ms)} ({_ms(row.first.p99_ms)}) | "
            f"{_ratio(row.first.ratio_to(row.create))} | "
            f"{_ms(row.replay.median_ms)} ({_ms(row.replay.p99_ms)}) | "
            f"{_ratio(row.replay.ratio_to(row.create))} |"
        )
    return lines


def _trace_tables(traces: Sequence[PathTrace]) -> list[str]:
    lines = [
        "| variant | request | status | statements (Django) | round trips (wire) | "
        "commits that wait for a WAL flush |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for trace in traces:
        lines.append(
            f"| {trace.variant.label} | {trace.path} | {trace.status} | "
            f"{len(trace.statements)} | {len(trace.round_trips)} | {trace.durable_commits} |"
        )
    for trace in traces:
        if trace.variant != OURS:
            continue
        lines += [
            "",
            f"**django-idempotency, {trace.path}** ({trace.status}): "
            f"{len(trace.round_trips)} round trips, {trace.durable_commits} durable commits",
            "",
            "```sql",
            *(f"{index:>2}. {_shorten(sql)}" for index, sql in enumerate(trace.round_trips, 1)),
            "```",
        ]
    return lines


def _shorten(sql: str, limit: int = 400) -> str:
    sql = " ".join(sql.split())
    return sql if len(sql) <= limit else sql[: limit - 5] + " ..."


def _profile_tables(profiles: Sequence[ProfileReport]) -> list[str]:
    lines: list[str] = []
    for profile in profiles:
        lines += [
            f"### {MODE_LABEL[profile.mode]}: {profile.ms_per_request:.2f} ms per request "
            f"under the profiler, {profile.cpu_ms_per_request:.2f} ms of it on the CPU "
            f"({profile.requests} requests)",
            "",
            "Self time by area (where the CPU actually was):",
            "",
            "| area | ms per request | share |",
            "|---|---:|---:|",
        ]
        for name, value in profile.areas:
            share = value / profile.ms_per_request if profile.ms_per_request else 0.0
            lines.append(f"| {name} | {value:.3f} | {share:.1%} |")
        lines += [
            "",
            "django_idempotency functions, inclusive time (children included; the database "
            "column is the part spent in psycopg and Django's db layer):",
            "",
            "| function | ms per request | of which database | share of request |",
            "|---|---:|---:|---:|",
        ]
        for spot in profile.ours[:15]:
            share = spot.ms_per_request / profile.ms_per_request
            lines.append(
                f"| `{spot.name}` | {spot.ms_per_request:.3f} | "
                f"{spot.database_ms_per_request:.3f} | {share:.1%} |"
            )
        lines += [
            "",
            "Landmarks of Django and DRF's own work:",
            "",
            "| frame | ms per request | of which database |",
            "|---|---:|---:|",
        ]
        for spot in profile.landmarks:
            lines.append(
                f"| {spot.name} | {spot.ms_per_request:.3f} | {spot.database_ms_per_request:.3f} |"
            )
        lines += ["", f"Full tree: `benchmarks/out/{profile.text_path.name}`.", ""]
    return lines


def _before_after_section(run: Run) -> list[str]:
    rows = before_and_after(run)
    if not rows:
        return []
    return [
        "## Before and after issue 24",
        "",
        "Ratios of medians, each against its baseline in the same interleaved rounds: the hot "
        "path before issue 24 (the view in a nested `atomic()` with its RELEASE; "
        "`benchproject/before_issue24.py`), today's path, and the one-statement replay that was "
        "measured and not shipped (`benchproject/one_statement.py`). What each idea saved or "
        "cost: `benchmarks/README.md`.",
        "",
        *rows,
        "",
    ]


def _load_warning(run: Run) -> list[str]:
    """Say so when other work shared the cores: absolute times are then inflated and noisy."""
    cores = int(run.machine.get("nproc", "0") or 0)
    busiest = max(run.load_before[0], run.load_after[0])
    if not cores or busiest <= cores * 0.75:
        return []
    return [
        f"**Loaded machine**: load average up to {busiest:.2f} on {cores} cores during this "
        "run (other jobs shared the CPU), so absolute times are inflated and noisy; only the "
        "ratios between series of one interleaved table compare.",
        "",
    ]


def markdown(run: Run) -> str:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{run.command}` on {when} in {run.seconds / 60:.1f} minutes"
        + (" (**quick run: small counts, indicative only**)" if run.quick else "")
        + ". Do not edit by hand: rerun the command. How the numbers are made: "
        "`benchmarks/README.md`.",
        "",
        *_load_warning(run),
        "## Headline",
        "",
        *(f"- {line}" for line in headline(run)),
        "",
        *(f"- {line}" for line in reading(run)),
        "",
        *_before_after_section(run),
        "Every ratio compares medians measured in the same run, the variants interleaved "
        "round-robin (one request of each per round, the order rotating every round), on the "
        "same model, serializer and endpoint, with token authentication.",
        "",
        "## Machine and versions",
        "",
        "| | |",
        "|---|---|",
        *(f"| {name} | {value} |" for name, value in run.machine.items()),
        f"| PostgreSQL | {run.postgres}: {run.server_note or 'default settings'}; a scratch "
        "database per run |",
        *(f"| {name} | {value:.3f} ms median |" for name, value in run.floor.items()),
        f"| load average (1, 5, 15 min) | {_load(run.load_before)} at the start, "
        f"{_load(run.load_after)} at the end |",
        f"| `uptime` | at the start: {run.uptime_before or 'n/a'}; at the end: "
        f"{run.uptime_after or 'n/a'} |",
        *(f"| {name} | {value} |" for name, value in run.versions.items()),
        "",
        "Counts used: " + ", ".join(f"{name} {value}" for name, value in run.plan.items()) + ".",
        "",
        "## The variants",
        "",
        "| variant | URL | how it is wired |",
        "|---|---|---|",
        *(f"| {v.label} | `{v.path}` | {v.how} |" for v in VARIANTS_SHOWN),
        "",
    ]
    lines += attribution_markdown(run.attributions, run.server_note)
    if run.inprocess is not None:
        lines += [
            "## In-process (Django test client, PostgreSQL)",
            "",
            "No socket and no worker scheduling, so the steadiest of the three tables; "
            "everything else (middleware, authentication, the view, PostgreSQL with its "
            "default durable commits) is real.",
            "",
            *_latency_table(run.inprocess, run.inprocess_series),
            "",
        ]
    if run.doors is not None:
        lines += [
            "## Every door (in-process)",
            "",
            "Each door of django-idempotency on the same `Order` create, measured against its "
            "own bare variant (the same handler without the decorator) in one interleaved run, "
            "Django's test client, token authentication. The ninja `async def` operations run "
            "through the test client's WSGI handler (Django adapts them with `async_to_sync`).",
            "",
            "| door | URL | how it is wired |",
            "|---|---|---|",
            *(f"| {v.label} | `{v.path}` | {v.how} |" for pair in DOORS for v in pair),
            "",
            *_door_table(run.doors, run.doors_series),
            "",
        ]
    if run.nosync is not None:
        lines += [
            "## In-process, commits not waiting for the disk",
            "",
            "The same rounds with `synchronous_commit = off` for the benchmark's session: a "
            "commit no longer waits for its WAL flush, so what remains is CPU and round trips. "
            "Not a deployment recommendation; it separates the layer's software cost from the "
            "disk's, which dominates the table above on this machine.",
            "",
            *_latency_table(run.nosync, run.inprocess_series),
            "",
        ]
    if run.http is not None:
        lines += [
            "## Over HTTP (gunicorn on 127.0.0.1)",
            "",
            "gunicorn, 4 `gthread` workers of one thread; one client sending sequential requests "
            "on a keep-alive connection (`requests.Session`). Latency is the client's: request "
            "sent to response body read.",
            "",
            *_latency_table(run.http, run.http_series),
            "",
        ]
    if run.storms:
        first = run.storms[0]
        lines += [
            "## Duplicate storm",
            "",
            f"{first.keys} keys x {first.copies} simultaneous copies of the same request "
            "(released together by a barrier, each on its own connection) against gunicorn with "
            "4 `sync` workers; no artificial delay in the view. Duplicate rows are rows beyond "
            'one per key in the business table. "Copies answered 201" counts the replayed 201s '
            "among the requests other than the one run per key.",
            "",
            *_storm_table(run.storms),
            "",
        ]
    if run.throughput:
        bare_rate = next((t.per_second for t in run.throughput if t.variant == BARE), 0.0)
        lines += [
            "## Throughput at saturation",
            "",
            f"{run.throughput[0].clients} clients sending new requests back to back (a new key "
            "each) against gunicorn with 4 `sync` workers on the same 2 cores as PostgreSQL; "
            "the variants take turns in a rotating order and their bursts are summed.",
            "",
            "| variant | answered 2xx | failed | seconds | requests/s | / bare create |",
            "|---|---:|---:|---:|---:|---:|",
            *(
                f"| {t.variant.label} | {t.answered} | {t.failed} | {t.seconds:.1f} | "
                f"{t.per_second:.1f} | "
                f"{_ratio(t.per_second / bare_rate) if bare_rate else 'n/a'} |"
                for t in run.throughput
            ),
            "",
        ]
    if run.growth:
        lines += [
            "## Growth with live records",
            "",
            "django-idempotency's record table filled with live, completed records (random keys "
            "over 50,000 principals, 200-byte bodies, then `VACUUM ANALYZE`), measured "
            "in-process against the bare create in the same rounds.",
            "",
            *_growth_table(run.growth, "live records"),
            "",
        ]
        if run.growth_note:
            lines += [run.growth_note, ""]
    if run.bodies:
        lines += [
            "## Stored body size",
            "",
            "The create's response padded to the size shown (the request stays small), so the "
            "bare create renders and sends the same bytes; both sizes in the same interleaved "
            "rounds, in-process, "
            f"{run.bodies[0].records:,} live records.",
            "",
            *_growth_table(run.bodies, "response body"),
            "",
        ]
    if run.traces:
        lines += [
            "## SQL per request",
            "",
            "Statements as Django's `CaptureQueriesContext` records them, and round trips as "
            "libpq's protocol trace sees them (that count adds the `BEGIN`, `COMMIT` and "
            "savepoint commands that Django and psycopg send without logging them). Mismatch: "
            "the same key again with another body.",
            "",
            *_trace_tables(run.traces),
            "",
        ]
    if run.profiles:
        lines += [
            "## Profile of the hot path (pyinstrument, in-process)",
            "",
            "Sampled every 500 us (wall clock) over many requests of django-idempotency; "
            "per-request "
            "figures are the total divided by the request count. In-process, so the test "
            "client's own work appears as its own area.",
            "",
            *_profile_tables(run.profiles),
        ]
    return "\n".join(lines).rstrip() + "\n"

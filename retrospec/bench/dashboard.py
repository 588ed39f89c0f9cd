"""dashboard: issue list and issue page latency on a generated database (10k issues, 1M failures).

The data is generated straight into the schema with executemany (running 1M failures through the
cluster job would take longer than the measurement); counts, facets, days and sessions are
consistent enough for the pages to do their real work.
"""

from __future__ import annotations

import http.client
import http.cookiejar
import json
import random
import re
import sqlite3
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from retrospec.bench.loadgen import percentile
from retrospec.bench.payloads import USER_AGENT, _stack
from retrospec.bench.runner import (
    BenchContext,
    BenchResult,
    Figure,
    RetrospecServer,
    at_most,
    running,
    start_retrospec,
)
from retrospec.sites import create_site
from retrospec.storage.db import DirectWriter, connect
from retrospec.storage.migrations import prepare_database

TARGET_P95_MS = 50.0
DAY_MS = 86_400_000
PASSWORD = "bench-password-0123456789"  # noqa: S105 - a throwaway account in a temp data dir


def generate(db: Path, issues: int, failures: int, seed: int = 3) -> str:
    """Fill db with sessions, failures and clusters; returns the site id."""
    rng = random.Random(seed)
    prepare_database(db)
    conn = connect(db)
    try:
        site, _ = DirectWriter(conn).call(lambda c: create_site(c, "bench", []))
        now = int(time.time() * 1000)
        per_session = 10
        n_sessions = max(1, failures // per_session)
        # Zipf-like popularity: a few issues get most failures, the long tail gets one or two.
        weights = [1.0 / (i + 1) ** 0.9 for i in range(issues)]
        picks = rng.choices(range(issues), weights=weights, k=n_sessions * 2)
        browsers = ["Chrome 126", "Firefox 127", "Safari 17", "Edge 126"]
        oses = ["Windows", "macOS", "iOS", "Android", "Linux"]
        stats: list[dict[str, int]] = [
            {"failures": 0, "first": now, "last": 0, "sample": 0} for _ in range(issues)
        ]
        pairs: dict[tuple[int, str], list[int]] = {}
        users: set[tuple[int, str]] = set()
        days: dict[tuple[int, int], int] = {}
        session_rows = []
        failure_rows = []
        fid = 0
        span = 30 * DAY_MS
        for s in range(n_sessions):
            sid = f"gen-{s:08d}"
            started = now - rng.randint(0, span)
            ukey = f"anon:u{s % max(1, n_sessions // 3)}"
            browser = browsers[s % len(browsers)]
            os_name = oses[s % len(oses)]
            session_rows.append(
                (
                    sid,
                    site.id,
                    started,
                    started + 60_000,
                    ukey,
                    USER_AGENT,
                    browser,
                    os_name,
                    "https://shop.example/",
                    "https://shop.example/checkout",
                    "1.4.2",
                    per_session,
                    "none",
                )
            )
            mine = picks[2 * s : 2 * s + 2]
            for k in range(per_session):
                cid = mine[k % 2]
                fid += 1
                ts = started + k * 5000
                st = stats[cid]
                st["failures"] += 1
                st["first"] = min(st["first"], ts)
                st["last"] = max(st["last"], ts)
                if not st["sample"]:
                    st["sample"] = fid
                pair = pairs.setdefault((cid + 1, sid), [0, fid, ts])
                pair[0] += 1
                pair[2] = max(pair[2], ts)
                users.add((cid + 1, ukey))
                day = ts // DAY_MS
                days[(cid + 1, day)] = days.get((cid + 1, day), 0) + 1
                payload = (
                    json.dumps({"stack": _stack(f"item{cid}", f"main{cid % 50}")})
                    if fid == st["sample"] or fid % 20 == 0
                    else None
                )
                failure_rows.append(
                    (
                        fid,
                        site.id,
                        sid,
                        0,
                        "error",
                        "TypeError",
                        f"Cannot read properties of undefined (reading 'item{cid}')",
                        "https://shop.example/checkout",
                        ts,
                        ts,
                        "1.4.2",
                        browser,
                        os_name,
                        ukey,
                        f"fp{cid:06d}",
                        cid + 1,
                        payload,
                    )
                )
        sessions_per: dict[int, int] = {}
        for cid, _sid in pairs:
            sessions_per[cid] = sessions_per.get(cid, 0) + 1
        users_per: dict[int, int] = {}
        for cid, _u in users:
            users_per[cid] = users_per.get(cid, 0) + 1
        cluster_rows = []
        for i, st in enumerate(stats):
            cid = i + 1
            if not st["failures"]:
                st.update(failures=1, first=now - span, last=now - span)
            status = "open" if i % 10 < 8 else ("resolved" if i % 10 == 8 else "ignored")
            cluster_rows.append(
                (
                    cid,
                    site.id,
                    f"fp{i:06d}",
                    "error",
                    "stack",
                    f"TypeError: Cannot read properties of undefined (reading 'item{i}')",
                    f"item{i} (static/js/main{i % 50}.js)",
                    "[]",
                    status,
                    st["failures"],
                    sessions_per.get(cid, 1),
                    users_per.get(cid, 1),
                    st["first"],
                    st["last"],
                    st["first"],
                    st["sample"] or None,
                    now,
                )
            )
        facet_rows: list[tuple[int, str, str, int]] = []
        for cid in range(1, issues + 1):
            for facet, values in (
                ("browser", browsers[:3]),
                ("os", oses[:3]),
                ("url", ["https://shop.example/checkout"]),
                ("release", ["1.4.2", "1.4.1"]),
            ):
                facet_rows.extend((cid, facet, v, rng.randint(1, 50)) for v in values)
        sql: list[tuple[str, list[Any]]] = [
            (
                "INSERT INTO sessions (id, site_id, started_at, last_seen_at, user_key, "
                "user_agent, "
                "browser, os, entry_url, last_url, release, failures, replay_status) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                session_rows,
            ),
            (
                "INSERT INTO failures (id, site_id, session_id, seq, kind, type, message, url, ts, "
                "received_at, release, browser, os, user_key, fingerprint, cluster_id, payload) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                failure_rows,
            ),
            (
                "INSERT INTO clusters (id, site_id, fingerprint, kind, basis, title, culprit, "
                "frames, "
                "status, failure_count, session_count, user_count, first_seen_at, last_seen_at, "
                "promoted_at, sample_failure_id, updated_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                cluster_rows,
            ),
            (
                "INSERT INTO cluster_sessions (cluster_id, session_id, failures, first_failure_id, "
                "last_seen_at) VALUES (?,?,?,?,?)",
                [(c, s, v[0], v[1], v[2]) for (c, s), v in pairs.items()],
            ),
            ("INSERT INTO cluster_users (cluster_id, user_key) VALUES (?,?)", sorted(users)),
            (
                "INSERT INTO cluster_facets (cluster_id, facet, value, count) VALUES (?,?,?,?)",
                facet_rows,
            ),
            (
                "INSERT INTO cluster_days (cluster_id, day, count) VALUES (?,?,?)",
                [(c, d, n) for (c, d), n in days.items()],
            ),
            (
                "INSERT INTO issue_events (cluster_id, at, action, actor) VALUES (?,?,?,?)",
                [(r[0], r[14], "promoted", None) for r in cluster_rows],
            ),
        ]

        def write(c: sqlite3.Connection) -> None:
            for statement, rows in sql:
                c.executemany(statement, rows)

        DirectWriter(conn).call(write)
        conn.execute("ANALYZE")
        return site.id
    finally:
        conn.close()


def _add_user(db: Path) -> None:
    from retrospec.auth import create_user, hash_password

    conn = connect(db)
    try:
        DirectWriter(conn).call(lambda c: create_user(c, "bench", hash_password(PASSWORD)))
    finally:
        conn.close()


def _login(port: int) -> str:
    """Log in through /login like a browser; returns the Cookie header for later requests."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    base = f"http://127.0.0.1:{port}"
    with opener.open(f"{base}/login", timeout=30) as resp:
        html = resp.read().decode()
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    if match is None:
        raise RuntimeError("no csrf_token on /login")
    form = urllib.parse.urlencode(
        {"username": "bench", "password": PASSWORD, "csrf_token": match.group(1), "next": "/"}
    ).encode()
    with opener.open(f"{base}/login", data=form, timeout=30) as resp:
        resp.read()
    cookies = "; ".join(f"{c.name}={c.value}" for c in jar)
    if "retrospec_session" not in cookies:
        raise RuntimeError("login did not set a session cookie")
    return cookies


def _timed_gets(port: int, cookie: str, paths: list[str]) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times: list[float] = []
    try:
        for path in paths:
            t0 = time.perf_counter()
            conn.request("GET", path, headers={"Cookie": cookie})
            resp = conn.getresponse()
            resp.read()
            elapsed = (time.perf_counter() - t0) * 1000
            if resp.status != 200:
                raise RuntimeError(f"GET {path} answered {resp.status}")
            times.append(elapsed)
    finally:
        conn.close()
    return times


def run(ctx: BenchContext, res: BenchResult) -> None:
    """Generate the database, log in, then time the issue list and issue pages."""
    issues, failures = (1_000, 20_000) if ctx.quick else (10_000, 1_000_000)
    reps = 30 if ctx.quick else 200
    data = ctx.scratch("dashboard") / "data"
    t0 = time.monotonic()
    generate(data / "retrospec.sqlite3", issues, failures)
    ctx.log(f"generated {issues:,} issues / {failures:,} failures in {time.monotonic() - t0:.0f} s")
    _add_user(data / "retrospec.sqlite3")
    rng = random.Random(5)
    with running(start_retrospec(ctx, "dashboard", jobs=False, data_dir=data)) as rs:
        assert isinstance(rs, RetrospecServer)
        cookie = _login(rs.port)
        _timed_gets(rs.port, cookie, ["/"] * 5)  # warm the caches the way a live server is
        pages = {
            "list": ["/"] * reps,
            "list_by_failures": ["/?sort=failures"] * (reps // 2),
            "list_page_10": ["/?page=10"] * (reps // 2),
            "list_search": [f"/?q=item{rng.randint(0, issues - 1)}" for _ in range(reps // 2)],
            "issue": [f"/issues/{rng.randint(1, issues // 10)}" for _ in range(reps)],
        }
        timings = {name: _timed_gets(rs.port, cookie, paths) for name, paths in pages.items()}
    labels = {
        "list": "issue list (/), p95",
        "list_by_failures": "list sorted by failures, p95",
        "list_page_10": "list page 10, p95",
        "list_search": "list search (?q=), p95",
        "issue": "issue page, p95",
    }
    for name, times in timings.items():
        res.add(
            Figure(
                f"{name}_p95_ms",
                labels[name],
                percentile(times, 95),
                "ms",
                target=at_most(TARGET_P95_MS) if name in ("list", "issue") else None,
                higher_is_better=False,
            )
        )
    res.add(
        Figure(
            "list_p50_ms",
            "issue list (/), p50",
            percentile(timings["list"], 50),
            "ms",
            higher_is_better=False,
        )
    )
    res.notes.append(
        f"{issues:,} issues / {failures:,} failures generated; logged in through /login; "
        f"{reps} sequential keep-alive GETs per page (whole response, server on loopback); "
        "issue pages drawn from the 10% most frequent issues."
    )

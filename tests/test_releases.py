"""Releases in first-seen order, `releases list`, resolve in next release, map retention."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from litestar.testing import TestClient
from typer.testing import CliRunner

from retrospec.app import create_app
from retrospec.cli import main as cli
from retrospec.errors import BadRequest
from retrospec.issues.queries import change_status
from retrospec.issues.releases import is_newer, latest_release
from retrospec.retention import purge
from retrospec.settings import Settings
from retrospec.sourcemaps.store import list_files, store_artifacts
from retrospec.sourcemaps.upload import ArtifactFile
from retrospec.storage.blobs import BlobStore
from retrospec.storage.db import DirectWriter
from tests.support.accounts import add_user, login
from tests.support.envelopes import error
from tests.support.feeds import Feed, make_feed, sid
from tests.support.sourcemaps import JS, MAP

DAY = 86_400_000


@pytest.fixture
def feed(settings: Settings) -> Iterator[Feed]:
    f = make_feed(settings)
    yield f
    f.conn.close()


def cli_json(settings: Settings, *args: str) -> dict[str, object]:
    result = CliRunner().invoke(
        cli.app, [*args, "--json"], env={"RETROSPEC_DATA_DIR": settings.data_dir}
    )
    assert result.exit_code == 0, result.output
    doc: dict[str, object] = json.loads(result.output)
    return doc


def resolve_next(feed: Feed, cid: int) -> str:
    return DirectWriter(feed.conn).call(
        lambda c: change_status(c, cid, "resolve", "tester", in_next_release=True)
    )


def test_releases_are_ordered_by_first_seen_not_by_name(feed: Feed) -> None:
    # "10.0" sorts before "9.0" as text; RetroSpec never sorts names.
    feed.send(sid(), error(), release="9.0", received_at=1_000_000)
    feed.send(sid(), error(), release="10.0", received_at=2_000_000)
    feed.cluster()
    assert latest_release(feed.conn, feed.site.id) == "10.0"
    assert is_newer(feed.conn, feed.site.id, "10.0", "9.0")
    assert not is_newer(feed.conn, feed.site.id, "9.0", "10.0")
    assert not is_newer(feed.conn, feed.site.id, "9.0", "9.0")
    doc = cli_json(feed.settings, "releases", "list", "--site", "shop")
    releases = doc["releases"]
    assert isinstance(releases, list)
    assert [r["release"] for r in releases] == ["10.0", "9.0"]
    assert releases[0]["sessions"] == 1 and releases[0]["failures"] == 1
    assert releases[1]["new_issues"] == 1 and releases[0]["has_source_maps"] is False


def test_resolve_in_next_release(feed: Feed) -> None:
    feed.send(sid(), error(), release="1.0")
    feed.send(sid(), error(), release="2.0")
    feed.cluster()
    (cluster,) = feed.clusters()
    cid = int(cluster["id"])
    assert resolve_next(feed, cid) == "resolved"
    assert feed.value("SELECT resolved_in_release FROM clusters") == "2.0"
    # The current release and an older one (a stale tab) do not reopen it.
    feed.send(sid(), error(), release="2.0")
    feed.send(sid(), error(), release="1.0")
    feed.cluster()
    assert feed.value("SELECT status FROM clusters") == "resolved"
    # A newer release does, as a regression in that release.
    feed.send(sid(), error(), release="3.0")
    feed.cluster()
    status, regression = feed.rows("SELECT status, regression FROM clusters")[0]
    assert (status, regression) == ("open", 1)
    assert feed.rows(
        "SELECT action, release FROM issue_events WHERE action IN ('resolved', 'regressed') "
        "ORDER BY id"
    ) == [("resolved", "2.0"), ("regressed", "3.0")]
    doc = cli_json(feed.settings, "releases", "list")
    by_release = {r["release"]: r for r in doc["releases"]}  # type: ignore[attr-defined]
    assert by_release["3.0"]["regressions"] == 1
    shown = cli_json(feed.settings, "issues", "show", str(cid))
    assert shown["releases"] == {
        "first": "1.0",
        "last": "3.0",
        "resolved_in": None,
        "sample": "3.0",
        "sample_has_source_maps": False,
    }


def test_resolve_in_next_release_needs_a_release(feed: Feed) -> None:
    feed.send(sid(), error(), release=None)
    feed.send(sid(), error(), release=None)
    feed.cluster()
    (cluster,) = feed.clusters()
    with pytest.raises(BadRequest, match="no release"):
        resolve_next(feed, int(cluster["id"]))
    result = CliRunner().invoke(
        cli.app,
        ["issues", "resolve", str(cluster["id"]), "--in-next-release"],
        env={"RETROSPEC_DATA_DIR": feed.settings.data_dir},
    )
    assert result.exit_code == 1


def test_dashboard_resolve_in_next_release_and_releases_page(feed: Feed) -> None:
    feed.send(sid(), error(), release="1.0")
    feed.send(sid(), error(), release="1.0")
    feed.cluster()
    (cluster,) = feed.clusters()
    add_user(feed.settings)
    with TestClient(create_app(feed.settings, start_jobs=False)) as client:
        csrf = login(client)
        page = client.get(f"/issues/{cluster['id']}")
        assert "Resolve in next release" in page.text
        assert "has no source maps" in page.text
        res = client.post(
            f"/issues/{cluster['id']}/status",
            data={"action": "resolve_next", "csrf_token": csrf},
            headers={"hx-request": "true"},
        )
        assert res.status_code == 200 and "Resolved in the next release" in res.text
        assert feed.value("SELECT resolved_in_release FROM clusters") == "1.0"
        releases = client.get(f"/sites/{feed.site.id}/releases")
        assert releases.status_code == 200 and 'data-release="1.0"' in releases.text
        no_csrf = client.post(f"/sites/{feed.site.id}/upload-token")
        assert no_csrf.status_code == 403


def test_retention_keeps_maps_of_releases_still_in_use(feed: Feed) -> None:
    blobs = BlobStore(feed.settings.effective_blob_url)
    for release in ("old", "live", "pinned"):
        store_artifacts(
            DirectWriter(feed.conn).call,
            blobs,
            feed.site.id,
            release,
            "",
            [ArtifactFile(f"~/{release}/app.js", JS, MAP, None)],
        )
    feed.conn.execute("UPDATE sourcemap_files SET pinned = 1 WHERE release = 'pinned'")
    later = 30 * DAY
    now = feed.value("SELECT max(uploaded_at) FROM sourcemap_files") + later
    feed.send(sid(), error(), release="live", received_at=now - DAY)
    feed.conn.execute("UPDATE sessions SET started_at = ? WHERE release = 'live'", (now - DAY,))
    report = purge(feed.context(), now=now, orphan_grace_s=0)
    assert report.sourcemaps == 1 and report.errors == 0
    left = {f.release for f in list_files(feed.conn, feed.site.id)}
    assert left == {"live", "pinned"}
    # Shared content-addressed blobs stay while any release still names them.
    for f in list_files(feed.conn, feed.site.id):
        assert blobs.exists(f"sourcemaps/{feed.site.id}/{f.map_digest[:2]}/{f.map_digest}.zst")

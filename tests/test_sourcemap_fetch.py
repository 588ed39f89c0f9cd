"""Fetch mode against real local HTTP servers: the site's own origins only, no SSRF, in the job."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from retrospec.cli import main as cli
from retrospec.settings import Settings
from retrospec.sites import get_site, set_fetch_sourcemaps, set_origins
from retrospec.sourcemaps.fetch import FetchRefused, Limits, fetch_artifact, fetch_url
from retrospec.sourcemaps.maps import load_map
from retrospec.storage.db import DirectWriter
from tests.support.envelopes import error
from tests.support.feeds import Feed, make_feed, sid
from tests.support.servers import StaticSite, serve_static
from tests.support.sourcemaps import JS, MAP

LIMITS = Limits(timeout_s=5.0, max_bytes=1 << 20)


class _Redirect(http.server.BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", self.target)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def other_host(tmp_path: Path) -> Iterator[StaticSite]:
    """A second server: another origin, serving the same map."""
    root = tmp_path / "other"
    root.mkdir()
    (root / "app.min.js.map").write_bytes(MAP)
    with serve_static(root) as site:
        yield site


@pytest.fixture
def feed(settings: Settings) -> Iterator[Feed]:
    f = make_feed(settings)
    yield f
    f.conn.close()


def configure(feed: Feed, origin: str) -> None:
    def change(conn: object) -> None:
        set_origins(conn, feed.site.id, [origin])  # type: ignore[arg-type]
        set_fetch_sourcemaps(conn, feed.site.id, True)  # type: ignore[arg-type]

    DirectWriter(feed.conn).call(change)


def site_of(feed: Feed) -> object:
    return get_site(feed.conn, feed.site.id)


def test_fetches_bundle_and_map_from_the_allowed_origin(
    feed: Feed, static_site: StaticSite
) -> None:
    (static_site.root / "assets").mkdir()
    (static_site.root / "assets" / "app.min.js").write_bytes(JS)
    (static_site.root / "assets" / "app.min.js.map").write_bytes(MAP)
    configure(feed, static_site.origin)
    url = f"{static_site.origin}/assets/app.min.js"
    token = next(t for t in load_map(MAP).view if t.src and t.src.endswith("mod7.js") and t.name)
    text = f"TypeError: x\n    at e ({url}?v=1:{token.dst_line + 1}:{token.dst_col + 1})"
    feed.send(sid(), error(stack=text), release="7.0")
    feed.cluster()
    (cluster,) = feed.clusters()
    top = feed.frames(int(cluster["id"]))[0]
    assert top["mapped"] and top["path"] == "src/mod7.js"
    assert feed.rows("SELECT name, origin, release FROM sourcemap_files") == [(url, "fetch", "7.0")]


def test_a_map_on_another_host_is_refused(
    feed: Feed, static_site: StaticSite, other_host: StaticSite
) -> None:
    js = JS.replace(
        b"sourceMappingURL=app.min.js.map",
        f"sourceMappingURL={other_host.origin}/app.min.js.map".encode(),
    )
    (static_site.root / "app.js").write_bytes(js)
    configure(feed, static_site.origin)
    with pytest.raises(FetchRefused, match="not one of the site's allowed origins"):
        fetch_artifact(site_of(feed), f"{static_site.origin}/app.js", LIMITS)  # type: ignore[arg-type]
    # In the job: the failure is clustered unmapped and nothing is stored.
    feed.send(sid(), error(stack=f"E\n    at e ({static_site.origin}/app.js:1:50)"), release="1")
    result = feed.cluster()
    assert result.items == 1 and feed.value("SELECT count(*) FROM sourcemap_files") == 0


def test_redirects_are_checked_hop_by_hop(feed: Feed, other_host: StaticSite) -> None:
    _Redirect.target = f"{other_host.origin}/app.min.js.map"
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        origin = f"http://localhost:{server.server_address[1]}"
        configure(feed, origin)
        with pytest.raises(FetchRefused, match="allowed origins"):
            fetch_url(site_of(feed), f"{origin}/x.js", LIMITS)  # type: ignore[arg-type]
    finally:
        server.shutdown()
        server.server_close()


def test_a_public_looking_name_that_resolves_to_loopback_is_refused(
    feed: Feed, static_site: StaticSite
) -> None:
    # The machine's own host name resolves to a loopback/private address here; as an allowed
    # origin it is not "localhost" or an IP literal, so DNS must not open the way in.
    name = socket.gethostname()
    address = socket.getaddrinfo(name, static_site.port, type=socket.SOCK_STREAM)[0][4][0]
    assert address.startswith(("127.", "10.", "192.168.", "172.")) or address == "::1"
    origin = f"http://{name.lower()}:{static_site.port}"
    configure(feed, origin)
    with pytest.raises(FetchRefused, match="private or loopback"):
        fetch_url(site_of(feed), f"{origin}/app.js", LIMITS)  # type: ignore[arg-type]


def test_size_cap_and_missing_files(feed: Feed, static_site: StaticSite) -> None:
    (static_site.root / "big.js").write_bytes(b"x" * 5000)
    configure(feed, static_site.origin)
    small = Limits(timeout_s=5.0, max_bytes=1000)
    with pytest.raises(FetchRefused, match="over 1000 bytes"):
        fetch_url(site_of(feed), f"{static_site.origin}/big.js", small)  # type: ignore[arg-type]
    with pytest.raises(FetchRefused, match="HTTP 404"):
        fetch_url(site_of(feed), f"{static_site.origin}/none.js", LIMITS)  # type: ignore[arg-type]


def test_cli_switch_needs_origins(settings: Settings) -> None:
    make_feed(settings).conn.close()
    env = {"RETROSPEC_DATA_DIR": settings.data_dir}
    result = CliRunner().invoke(cli.app, ["sites", "fetch-sourcemaps", "shop", "on"], env=env)
    assert result.exit_code == 1 and "allows any origin" in str(result.exception)
    CliRunner().invoke(
        cli.app, ["sites", "origins", "shop", "--origin", "https://a.example"], env=env
    )
    result = CliRunner().invoke(
        cli.app, ["sites", "fetch-sourcemaps", "shop", "on", "--json"], env=env
    )
    assert result.exit_code == 0 and '"fetch_sourcemaps": true' in result.output

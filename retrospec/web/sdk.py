"""GET /sdk/retrospec.js and /sdk/retrospec.mjs (the browser SDK), and the /demo page."""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2
from litestar import HttpMethod, Request, Response, get, route

from retrospec.paths import templates_dir
from retrospec.runtime import Runtime
from retrospec.sdk import CONTENT_TYPE, Bundle, bundles
from retrospec.sites import DEMO_SITE_ID, demo_key
from retrospec.web.assets import IMMUTABLE, AssetIndex

# The unversioned URL is what sites paste into their pages: cache briefly, revalidate by ETag.
SHORT_CACHE = "public, max-age=300"


def _accepts_gzip(header: str) -> bool:
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        if name.strip().lower() in ("gzip", "*"):
            return params.replace(" ", "").lower() not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def bundle_response(bundle: Bundle, request: Request[Any, Any, Any]) -> Response[bytes]:
    """Serve a bundle with caching headers, CORS for cross-origin module imports, and gzip."""
    etag = f'"{bundle.digest}"'
    versioned = request.query_params.get("v") == bundle.digest
    headers = {
        "cache-control": IMMUTABLE if versioned else SHORT_CACHE,
        "etag": etag,
        # Modules are always fetched with CORS; pages with COEP also need CORP to load a script.
        "access-control-allow-origin": "*",
        "cross-origin-resource-policy": "cross-origin",
        "x-content-type-options": "nosniff",
        "vary": "Accept-Encoding",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(b"", status_code=304, headers=headers)
    body = bundle.body
    if _accepts_gzip(request.headers.get("accept-encoding", "")):
        body = bundle.gzipped
        headers["content-encoding"] = "gzip"
    return Response(body, media_type=CONTENT_TYPE, headers=headers)


@get("/sdk/retrospec.js", include_in_schema=False, sync_to_thread=False)
def sdk_script(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The classic script: defines the global `Retrospec`."""
    return bundle_response(bundles().script, request)


@get("/sdk/retrospec.mjs", include_in_schema=False, sync_to_thread=False)
def sdk_module(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The ES module: `export { initRetrospec }`."""
    return bundle_response(bundles().module, request)


@cache
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir()),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def _demo_routes(rt: Runtime) -> list[Any]:
    key = demo_key(rt.secret)

    @get("/demo", include_in_schema=False, sync_to_thread=False)
    def demo_page(request: Request[Any, Any, Any]) -> Response[str]:
        """A shop-like page wired to the demo site, with a button per failure kind."""
        assets: AssetIndex = request.app.state.assets
        html = (
            _templates()
            .get_template("demo.html")
            .render(
                sdk_url=f"/sdk/retrospec.js?v={bundles().script.digest}",
                css_url=assets.url("demo/demo.css"),
                js_url=assets.url("demo/demo.js"),
                config={
                    # Empty means "this page's origin", which is right unless a proxy rewrites it.
                    "apiBaseUrl": rt.settings.public_url.rstrip("/"),
                    "apiKey": key,
                    "site": DEMO_SITE_ID,
                },
            )
        )
        return Response(html, media_type="text/html")

    @route(
        "/demo/api/fail",
        http_method=[HttpMethod.GET, HttpMethod.POST],
        include_in_schema=False,
        sync_to_thread=False,
    )
    def demo_fail() -> Response[dict[str, str]]:
        """Always 500, so the demo can show a failed request."""
        return Response({"error": "the demo backend failed on purpose"}, status_code=500)

    return [demo_page, demo_fail]


def routes(rt: Runtime) -> list[Any]:
    """Route handlers for app.py; /demo only when the demo is on (settings.demo_enabled)."""
    bundles()  # build at startup so a broken SDK source fails `retrospec serve`, not a request
    handlers: list[Any] = [sdk_script, sdk_module]
    if rt.settings.demo_enabled:
        handlers.extend(_demo_routes(rt))
    return handlers

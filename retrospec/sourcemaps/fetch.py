"""Fetch mode: get a bundle and its map from the site's own origins (off unless a site turns it on).

SSRF rules, checked on every hop (redirects included):
- the URL's origin (scheme, host, port) must be one of the site's allowed origins; a site that
  allows any origin cannot fetch at all, and a map referenced on another host is refused;
- the host is resolved once and the connection goes to the checked address (no second lookup
  that DNS could answer differently); private, loopback, link-local, reserved and multicast
  addresses are refused unless the allowed origin itself names one (an IP literal in such a
  range, or `localhost`), e.g. a site on a LAN;
- http and https only, at most 3 redirects, a size cap and a time limit per file.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from retrospec.errors import RetrospecError
from retrospec.sites import Site, normalize_origin
from retrospec.sourcemaps.maps import debug_id_of, inline_map_of, source_mapping_url_of
from retrospec.sourcemaps.upload import ArtifactFile

MAX_REDIRECTS = 3
USER_AGENT = "RetroSpec-sourcemap-fetch/1"


class FetchRefused(RetrospecError):
    """A fetch that the rules forbid or that failed (the message says which)."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-file caps."""

    timeout_s: float
    max_bytes: int


def _blocked(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
    )


def origin_is_private(host: str) -> bool:
    """Whether an allowed origin itself names a private or loopback host."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return _blocked(ipaddress.ip_address(name))
    except ValueError:
        return False


def _checked_address(host: str, port: int, private_ok: bool) -> str:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise FetchRefused(f"cannot resolve {host}: {exc}") from None
    for info in infos:
        address = str(info[4][0])
        if private_ok or not _blocked(ipaddress.ip_address(address.split("%", 1)[0])):
            return address
    raise FetchRefused(f"{host} resolves to a private or loopback address only; not fetched")


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def fetch_url(site: Site, url: str, limits: Limits) -> bytes:
    """GET url from one of the site's allowed origins under the SSRF rules above."""
    deadline = time.monotonic() + limits.timeout_s
    for _hop in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchRefused(f"not an http(s) URL: {url[:200]}")
        try:
            origin = normalize_origin(f"{parts.scheme}://{parts.netloc}")
        except RetrospecError:
            raise FetchRefused(f"invalid URL: {url[:200]}") from None
        if origin not in site.origins:
            raise FetchRefused(f"{origin} is not one of the site's allowed origins; not fetched")
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = _checked_address(host, port, origin_is_private(host))
        left = deadline - time.monotonic()
        if left <= 0:
            raise FetchRefused(f"fetching {url[:200]} took too long")
        cls = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
        conn = cls(host, port, address, left)
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            conn.request(
                "GET", path, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
            )
            response = conn.getresponse()
            if response.status in (301, 302, 303, 307, 308):
                location = response.getheader("location")
                if not location:
                    raise FetchRefused(f"{url[:200]}: redirect without a location")
                url = urljoin(url, location)
                continue
            if response.status != 200:
                raise FetchRefused(f"{url[:200]}: HTTP {response.status}")
            chunks: list[bytes] = []
            size = 0
            while True:
                chunk = response.read(65536)
                if not chunk:
                    return b"".join(chunks)
                size += len(chunk)
                if size > limits.max_bytes:
                    raise FetchRefused(f"{url[:200]} is over {limits.max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise FetchRefused(f"fetching {url[:200]} took too long")
                chunks.append(chunk)
        except (OSError, http.client.HTTPException) as exc:
            raise FetchRefused(f"{url[:200]}: {type(exc).__name__}: {exc}") from None
        finally:
            conn.close()
    raise FetchRefused(f"{url[:200]}: more than {MAX_REDIRECTS} redirects")


def fetch_artifact(site: Site, script_url: str, limits: Limits) -> ArtifactFile:
    """The bundle at script_url and the map it references, as an artifact named by its URL."""
    bare = script_url.split("#", 1)[0].split("?", 1)[0]
    js = fetch_url(site, bare, limits)
    reference = source_mapping_url_of(js)
    if reference is None:
        raise FetchRefused(f"{bare} has no sourceMappingURL comment")
    if reference.startswith("data:"):
        body = inline_map_of(js, max_bytes=limits.max_bytes)
        if body is None:
            raise FetchRefused(f"{bare}: unreadable inline source map")
        map_bytes = body
    else:
        map_bytes = fetch_url(site, urljoin(bare, reference), limits)
    return ArtifactFile(name=bare, js=js, map=map_bytes, debug_id=debug_id_of(js))

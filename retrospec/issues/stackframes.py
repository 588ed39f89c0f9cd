"""Parse and normalise JavaScript stack traces (Chrome/V8, Firefox, Safari) for grouping."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache, wraps
from typing import TypeVar

from retrospec.issues.bundlenames import strip_bundle_hash

__all__ = [
    "Frame",
    "collapse_repeats",
    "is_cross_site_cdn",
    "is_vendor",
    "parse_stack",
    "split_url",
    "template_segment",
]

# Stacks can be huge ("too much recursion" in Firefox prints thousands of lines); grouping only
# needs the top, so parsing stops early to keep the per-failure cost bounded.
MAX_STACK_LINES = 200
# Deploys repeat the same lines, files and names thousands of times, so caches make parsing
# nearly free. Longer strings (data: URLs, junk) bypass them to keep their memory bounded.
_CACHE_MAX_CHARS = 512
_T = TypeVar("_T")

# Browser-internal and extension code is never the site's bug. Safari hides extension URLs
# behind webkit-masked-url://hidden/.
_EXTENSION = re.compile(r"-extension:|webkit-masked-url:|extensions::|chrome://|resource://")

_CHROME_FRAME = re.compile(r"at (?:(?P<fn>.+?) \((?P<loc>.*)\)|(?P<bare>.+))")
_GECKO_FRAME = re.compile(r"(?P<fn>[^@]*)@(?P<loc>.+)")
_BARE_URL = re.compile(r"[A-Za-z][\w+.-]*:\S*:\d+(?::\d+)?")
_CHROME_CONSOLE_SCRIPT = re.compile(r"VM\d+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_IDENT = re.compile(r"#?(?:[^\W\d]|\$)[\w$]*")

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_HEX = re.compile(r"[0-9a-fA-F]+")
_B64 = re.compile(r"[A-Za-z0-9_-]+")
_EMAIL = re.compile(r"[^@/\s]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_VERSION = re.compile(r"v?\d+(?:\.\d+)+")

# Vendor code, matched against the normalised (lower-cased) path. Webpack/Vite/Next name their
# third-party chunks predictably; well-known libraries are matched by their bundle names.
_VENDOR_PATH = re.compile(
    r"node_modules|bower_components|/~/|/vendors?/|(?:^|/)vendors?[.~_-]|chunk-vendors|"
    r"polyfill|/core-js|regenerator-runtime|(?:^|/)zone(?:-evergreen)?(?:\.min)?\.js$|"
    r"react-dom|(?:^|/)react\.(?:production|development)|jquery|lodash|"
    r"/_next/static/chunks/(?:framework|webpack|polyfills)[.-]|"
    # Error monitoring SDKs: Sentry's npm packages and bundles named sentry.*.js.
    r"@sentry|(?:^|/)sentry[._-][^/]*\.m?js$"
)
# Functions an error monitoring SDK wraps the page's callbacks in (the browser calls the wrapper,
# which calls the handler): never the site's bug, even when bundled into the site's own file.
_SDK_WRAPPERS = frozenset({"sentryWrapped"})
# Public CDNs and third-party tag hosts; a suffix match on the host (so www.* variants count).
_VENDOR_HOSTS = frozenset(
    {
        "jsdelivr.net", "unpkg.com", "cdnjs.cloudflare.com", "ajax.googleapis.com",
        "code.jquery.com", "googletagmanager.com", "google-analytics.com", "doubleclick.net",
        "googlesyndication.com", "googleadservices.com", "gstatic.com", "polyfill.io",
        "polyfill-fastly.io", "bootstrapcdn.com", "esm.sh", "skypack.dev", "jspm.io", "jspm.dev",
        "cloudflareinsights.com", "connect.facebook.net", "js.stripe.com", "hotjar.com",
        "cdn.segment.com", "widget.intercom.io", "intercomcdn.com", "sentry-cdn.com",
        "js-agent.newrelic.com", "clarity.ms", "hs-scripts.com", "zdassets.com", "cookielaw.org",
        "cookiebot.com", "recaptcha.net", "platform.twitter.com", "cdn.ampproject.org",
    }
)  # fmt: skip
# Host labels that mark a cross-site host as a CDN/asset host (used only with a page URL).
_CDN_LABELS = frozenset({"static", "assets", "js", "scripts", "script", "widget", "widgets", "sdk"})
_TWO_PART_SUFFIXES = frozenset({"co", "com", "net", "org", "gov", "ac", "edu", "ne", "or"})


def _bounded_cache(maxsize: int) -> Callable[[Callable[[str], _T]], Callable[[str], _T]]:
    """lru_cache for one-string functions that skips strings longer than _CACHE_MAX_CHARS."""

    def decorate(fn: Callable[[str], _T]) -> Callable[[str], _T]:
        cached = lru_cache(maxsize=maxsize)(fn)

        @wraps(fn)
        def call(arg: str) -> _T:
            return cached(arg) if len(arg) <= _CACHE_MAX_CHARS else fn(arg)

        return call

    return decorate


@dataclass(frozen=True, slots=True)
class Frame:
    """One normalised stack frame (top of the stack first in every list)."""

    function: str | None  # normalised name, None if anonymous/minified
    path: str | None  # normalised path (no origin/query/hash/content hash)
    raw_file: str | None  # file URL as it appeared
    line: int | None
    column: int | None
    in_app: bool
    # Filled by symbolication (a source map): the original source around the failing line.
    context_line: str | None = None
    pre_context: tuple[str, ...] = ()
    post_context: tuple[str, ...] = ()
    mapped: bool = False  # True when function/path/line/column are the original source's


def split_url(url: str) -> tuple[str, str]:
    """Split a URL into (host, path) without scheme, credentials, default port, query, fragment."""
    cut = len(url)
    for ch in "?#":
        i = url.find(ch)
        if 0 <= i < cut:
            cut = i
    url = url[:cut].strip()
    m = _SCHEME.match(url)
    if m is not None:
        rest = url[m.end() :]
    elif url.startswith("//"):
        rest = url[2:]
    else:
        return "", url
    slash = rest.find("/")
    host, path = (rest, "/") if slash == -1 else (rest[:slash], rest[slash:])
    host = host.rpartition("@")[2].lower()
    if host.endswith((":80", ":443")):
        host = host.rpartition(":")[0]
    return host, path


def _has_digit(s: str) -> bool:
    return any(c.isdigit() for c in s)


def _is_hash(seg: str) -> bool:
    """True for long hex or long random-looking base64 segments (tokens, object ids, nanoids)."""
    n = len(seg)
    if n < 8:
        return False
    if _HEX.fullmatch(seg):
        return n >= 16 or (_has_digit(seg) and not seg.isdigit())
    if n < 16 or not _B64.fullmatch(seg) or not _has_digit(seg):
        return False
    if any(c.isupper() for c in seg) and any(c.islower() for c in seg):
        return True
    # Lower-case slugs like "getting-started-with-python3" have separators; random ids do not.
    return "-" not in seg and "_" not in seg and sum(c.isdigit() for c in seg) >= 3


def template_segment(seg: str) -> str:
    """Replace one dynamic URL path segment with `:id`, `:uuid`, `:hash` or `:email`."""
    if not seg or seg.isalpha():
        return seg
    if seg.isdigit():
        return ":id"
    if len(seg) == 36 and _UUID.fullmatch(seg):
        return ":uuid"
    if _is_hash(seg):
        return ":hash"
    if "@" in seg and _EMAIL.fullmatch(seg):
        return ":email"
    stem, dot, ext = seg.rpartition(".")
    if dot and stem and ext.isalpha() and len(ext) <= 5:
        templated = template_segment(stem)
        if templated.startswith(":"):
            return f"{templated}.{ext}"
    return seg


def _strip_content_hash(dirs: str, name: str) -> str:
    """`main.3f9a1c2b.chunk.js` -> `main.chunk.js`, `index-BdWv3kQ1.js` -> `index.js`."""
    if "." not in name:
        return template_segment(name)
    return strip_bundle_hash(f"{dirs}/{name}").rpartition("/")[2]


def _template_dir(seg: str) -> str:
    templated = template_segment(seg)
    if templated == seg and _VERSION.fullmatch(seg):
        return ":ver"  # versioned asset dirs change on every deploy
    return templated


@_bounded_cache(4096)
def _normalize_file(file: str) -> tuple[str, str, bool]:
    """Return (host, normalised path, is vendor) for a frame's file URL."""
    if file.startswith("blob:"):
        # Chrome prints blob URLs percent-encoded ("blob:http%3A//host/uuid").
        file = file[5:].replace("%3A", ":").replace("%3a", ":")
    host, path = split_url(file)
    segments = path.split("/")
    last = len(segments) - 1
    path = "/".join(
        _strip_content_hash(path, seg) if i == last else _template_dir(seg)
        for i, seg in enumerate(segments)
        if seg != "." or i == last
    )
    return host, path, is_vendor(host, path)


def _host_matches(host: str, domains: frozenset[str]) -> bool:
    host = host.partition(":")[0]
    while host:
        if host in domains:
            return True
        host = host.partition(".")[2]
    return False


def _site(host: str) -> str:
    """Approximate registrable domain ("cdn.shop.co.uk" -> "shop.co.uk"); no public suffix list."""
    parts = host.partition(":")[0].split(".")
    if len(parts) >= 3 and len(parts[-1]) == 2 and parts[-2] in _TWO_PART_SUFFIXES:
        return ".".join(parts[-3:])
    return ".".join(parts[-2:])


def is_vendor(host: str, path: str) -> bool:
    """Whether a frame's file (host, normalised path) is vendor code: a library or a CDN."""
    return (bool(host) and _host_matches(host, _VENDOR_HOSTS)) or bool(
        _VENDOR_PATH.search(path.lower())
    )


@lru_cache(maxsize=1024)
def is_cross_site_cdn(host: str, page_host: str) -> bool:
    """Whether `host` is another site's CDN-looking host, seen from a page on `page_host`."""
    if not host or not page_host or _site(host) == _site(page_host):
        return False
    labels = host.partition(":")[0].split(".")
    return any("cdn" in label or label in _CDN_LABELS for label in labels)


@_bounded_cache(4096)
def _clean_function(raw: str) -> str | None:
    """Reduce an engine's function label to a stable bare name, or None when anonymous/minified.

    Namespaces are stripped to the last member (`Object.handleClick`, `CartView.prototype.render`
    and Firefox's `render` all become `render`) because engines disagree on the receiver.
    """
    name = raw.strip()
    name = name.rpartition("*")[2]  # Firefox async cause: "promise callback*fn", "async*fn"
    for prefix in ("async ", "new "):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    if name.endswith("]") and " [as " in name:
        # Chrome's "[as alias]" is the property it was called through; Firefox and Safari never
        # show it, so using it would split one bug by browser.
        name = name.partition(" [as ")[0]
    if name.endswith(")") and "(" in name and not name.startswith("("):
        name = name[: name.index("(")]  # Firefox 3 era "bar(1)"
    if name.endswith("<"):
        return None  # Firefox "outer/<": an anonymous function nested in outer
    name = name.rpartition("/")[2]
    if "<" in name and not name.endswith(">"):
        name = name.rpartition("<")[2]  # Firefox "Foo</bar" -> "bar"
    name = name.rpartition(".")[2]
    for prefix in ("get ", "set "):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    if name in ("anonymous", "eval") or len(name) <= 2 or not _IDENT.fullmatch(name):
        return None
    return name


def _is_eval(file: str) -> bool:
    return (
        file.startswith(("eval at ", "<anonymous>", "debugger eval"))
        or "eval code" in file
        or " > eval" in file
        or " > Function" in file
        or _CHROME_CONSOLE_SCRIPT.fullmatch(file) is not None
    )


def _is_number(text: str) -> bool:
    # The length cap keeps int() away from Python's digit limit on hostile input.
    return text.isdecimal() and len(text) <= 9


def _split_location(loc: str) -> tuple[str, int, int | None] | None:
    """Split "url:line:col" (or "url:line"); None when there is no line number."""
    head, _, tail = loc.rpartition(":")
    if not head or not _is_number(tail):
        return None
    file, _, line = head.rpartition(":")
    if file and _is_number(line):
        return file, int(line), int(tail)
    return head, int(tail), None


@_bounded_cache(8192)
def _parse_line(line: str) -> Frame | None:
    """Parse one stack line; None for non-frame lines and for eval/native/extension frames."""
    text = line.strip()
    if not text or _EXTENSION.search(text):
        return None
    fn: str | None
    if text.startswith("at "):
        m = _CHROME_FRAME.fullmatch(text)
        if m is None:
            return None
        fn, loc = (m["fn"], m["loc"]) if m["bare"] is None else (None, m["bare"])
    elif "@" in text:
        m = _GECKO_FRAME.fullmatch(text)
        if m is None or ": " in m["fn"]:
            return None  # "@" inside a message line, not a frame
        fn, loc = m["fn"], m["loc"]
    elif _BARE_URL.fullmatch(text):
        fn, loc = None, text  # old Safari prints anonymous frames as a bare URL
    else:
        return None
    loc = loc.strip()
    if loc.startswith("async "):
        loc = loc[6:]
    # Native locations ("<anonymous>", "native", "[native code]", "index 0") have no line.
    parts = _split_location(loc)
    if parts is None or _is_eval(parts[0]):
        return None
    file, line_no, column = parts
    _host, path, vendor = _normalize_file(file)
    wrapper = fn is not None and fn.strip().rpartition(".")[2] in _SDK_WRAPPERS
    return Frame(
        function=_clean_function(fn) if fn else None,
        path=path or None,
        raw_file=file,
        line=line_no,
        column=column,
        in_app=not vendor and not wrapper,
    )


def collapse_repeats(frames: list[Frame]) -> list[Frame]:
    """Fold consecutive frames that normalise alike (recursion) into one."""
    out: list[Frame] = []
    prev: tuple[str | None, str | None] | None = None
    for frame in frames:
        ident = (frame.function, frame.path)
        if ident != prev:
            out.append(frame)
        prev = ident
    return out


def parse_stack(
    stack: str | None, *, page_url: str | None = None, collapse: bool = True
) -> list[Frame]:
    """Parse a Chrome/Firefox/Safari stack into normalised frames, top first.

    Eval, native and extension frames are dropped. Consecutive frames that normalise alike
    collapse: that folds recursion, and adjacent anonymous frames of one bundle, into one
    (`collapse=False` keeps them, for source maps or older grouping rules to tell them apart).
    With `page_url`, frames from another site's CDN-looking host are marked not in-app.
    """
    if not stack:
        return []
    page_host = split_url(page_url)[0] if page_url else ""
    frames: list[Frame] = []
    for line in stack.splitlines()[:MAX_STACK_LINES]:
        frame = _parse_line(line)
        if frame is None:
            continue
        if frame.in_app and page_host and frame.raw_file:
            host = _normalize_file(frame.raw_file)[0]
            if is_cross_site_cdn(host, page_host):
                frame = replace(frame, in_app=False)
        frames.append(frame)
    return collapse_repeats(frames) if collapse else frames

"""Content hashes in bundle file names, as every mainstream bundler writes them (pure functions).

A deploy renames every bundle; grouping must not see that. What real builds name their files
(the survey behind these rules built one app with each tool):

- esbuild `[name]-[hash]` and Angular >= 17 (esbuild builder): `main-YGIWARMX.js`,
  `chunk-KPFP7EYU.js`: 8 characters of base32 `[A-Z2-7]`; about a fifth have no digit and a
  third exactly one, so no digit count can be required.
- Rollup and Vite (Rolldown too): `index-BTz1DVsl.js`, `Settings-CL36R1i_.js`,
  `main-NuG-kfnj.js`: 8 characters of base64url, which may contain `-` and `_` themselves.
- webpack `[name].[contenthash].js` (20 hex), CRA and Vue CLI `[contenthash:8]`
  (`main.2f2115e8.js`, `787.5c50a2f5.chunk.js`), asset files named by their hash alone
  (`a69243d21de4c981a8a4.css`), Parcel (`app.3a6c81d9.js`), Angular <= 16 (16-20 hex).
- Next.js (webpack): `main-c0e5b965ee4a80f3.js`, `pages/_app-6f8a1fe6ee715472.js` (16 hex);
  Turbopack: `0069wf-n15i8d.js`, `turbopack-0zq_vp9s-5ndp.js`, a whole stem of 13 `[0-9a-z_-]`,
  recognised only under `_next/static/chunks/`.

An 8-character token is taken for a hash when it is esbuild's base32 (upper-case letters and
2-7); or starts or ends with `-`/`_`; or holds `-`/`_` with a capital or two digit runs; or holds
digits with a capital, two digit runs, or a 4+ letter run without a vowel; or mixes cases without
being a camelCase/PascalCase word. So `calendar`, `Calendar`, `UserList`, `dataGrid`, `date-fns`,
`vue-i18n`, `web3auth` and `handler2` stay names. Known limits: an all-capital 8-letter name
(`app-SETTINGS.js`) reads as an esbuild hash; about 3% of Vite hashes look like words (`OzJseiqt`)
and stay. Directory segments (build ids, versions) are the caller's business.
"""

from __future__ import annotations

import re

__all__ = ["looks_like_hash8", "strip_bundle_hash"]

_EXT = re.compile(r"(\.[A-Za-z][A-Za-z0-9]{0,5})(\.map)?$")  # .js .mjs .css .woff2 (+ .map)
_HEX = re.compile(r"[0-9a-fA-F]+")
_LOWER_HEX = re.compile(r"[0-9a-f]+")
_B32 = re.compile(r"[A-Z2-7]{8}")
_B64_8 = re.compile(r"[A-Za-z0-9_-]{8}")
_WORDLIKE = re.compile(r"[A-Z]?[a-z]+(?:[A-Z][a-z]+)*")
_DIGIT_RUN = re.compile(r"[0-9]+")
_LETTER_RUN = re.compile(r"[A-Za-z]{4,}")
_VOWEL = re.compile(r"[aeiouyAEIOUY]")
_CAMEL_PART = re.compile(r"[A-Z]?[a-z]+")
_DASH_SUFFIX = re.compile(r"(?P<name>.+?)[-_~](?P<hash>[A-Za-z0-9_-]{8}|[0-9a-fA-F]{6,})")
_TURBOPACK = re.compile(r"(?:(?P<prefix>[a-z]+)-)?(?P<hash>[0-9a-z_-]{13})")


def _pronounceable(text: str) -> bool:
    """Every run of 4+ letters has a vowel: "Dwtmhsjv" is no word, "UserList" may be."""
    return all(_VOWEL.search(run) for run in _LETTER_RUN.findall(text))


def looks_like_hash8(tok: str) -> bool:
    """Whether an 8-character token is an esbuild, Rollup or Vite content hash (module docs)."""
    if _B64_8.fullmatch(tok) is None:
        return False
    if _B32.fullmatch(tok):
        return True
    if tok[0] in "-_" or tok[-1] in "-_":
        return True  # names neither start nor end with a separator
    upper = any(c.isupper() for c in tok)
    lower = any(c.islower() for c in tok)
    runs = len(_DIGIT_RUN.findall(tok))
    if "-" in tok or "_" in tok:
        return upper or runs >= 2  # "date-fns", "vue-i18n" are names
    if runs:
        # "handler2", "web3auth", "190proof" keep their digits in one run and are pronounceable.
        return upper or runs >= 2 or not _pronounceable(tok)
    if upper and lower:
        # camelCase words each have a vowel ("UserList"); "BxmbUyzw" reads as one word but not
        # its parts.
        parts = _CAMEL_PART.findall(tok)
        return (
            _WORDLIKE.fullmatch(tok) is None
            or not _pronounceable(tok)
            or any(len(p) >= 4 and not _VOWEL.search(p) for p in parts)
        )
    return False  # lower-case letters only: a word


def _is_hex_hash(tok: str) -> bool:
    # 6-15 hex characters need a digit ("facade", "deadbeef" are words); 16+ are hashes.
    if len(tok) < 6 or _HEX.fullmatch(tok) is None:
        return False
    return len(tok) >= 16 or any(c.isdigit() for c in tok)


def _strip_dot_tokens(body: str) -> list[str]:
    tokens = body.split(".")
    return [
        tok
        for i, tok in enumerate(tokens)
        if not (
            (_is_hex_hash(tok) and (i > 0 or len(tok) >= 8))
            or (i > 0 and (looks_like_hash8(tok) or (len(tok) >= 8 and tok.isdigit())))
        )
    ]


def _strip_suffix(tok: str, turbopack: bool, alone: bool) -> str:
    m = _DASH_SUFFIX.fullmatch(tok)
    if m is not None:
        h = m["hash"]
        hashed = looks_like_hash8(h) if len(h) == 8 else False
        if not hashed:
            hashed = _HEX.fullmatch(h) is not None and any(c.isdigit() for c in h)
        if hashed:
            return m["name"]
    if turbopack and alone:
        t = _TURBOPACK.fullmatch(tok)
        if t is not None and any(c.isdigit() for c in t["hash"]):
            return t["prefix"] or ""
    return tok


def strip_bundle_hash(name: str) -> str:
    """`main-YGIWARMX.js` -> `main.js`; `a69243d21de4c981a8a4.css` -> `:hash.css`.

    Only the last path segment changes; Turbopack's all-hash names are recognised only with
    their directory (`_next/static/chunks/0069wf-n15i8d.js`).
    """
    head, slash, base = name.rpartition("/")
    m = _EXT.search(base)
    if m is None or m.start() == 0:
        return name
    body, ext = base[: m.start()], base[m.start() :]
    kept = _strip_dot_tokens(body)
    if kept:
        turbopack = "_next/static/chunks" in head
        kept[-1] = _strip_suffix(kept[-1], turbopack, alone=len(kept) == 1)
    stripped = ".".join(k for k in kept if k)
    if stripped == body:
        return name
    return f"{head}{slash}{stripped or ':hash'}{ext}"

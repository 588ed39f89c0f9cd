"""Blob store over fsspec: zstd-compressed objects, atomic writes, keys built from validated ids."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import secrets
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import fsspec
import zstandard

from retrospec.errors import ConfigError, InvalidBlobKey
from retrospec.ids import is_id, is_session_id

_SEGMENT_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
_TMP_MARK = ".tmp-"
# Bytes per read and write when a blob is copied as a stream (BlobStore.put_stream).
STREAM_BLOCK = 8 << 20


def validate_id(value: str, what: str = "id") -> str:
    """Return value if it is a safe id (no dots, slashes or other path syntax)."""
    valid = is_session_id(value) if what == "session id" else is_id(value)
    if not valid:
        raise InvalidBlobKey(f"invalid {what}: {value!r}")
    return value


def validate_key(key: str) -> str:
    """Reject keys that could escape the store root (absolute, '..', backslashes, empty parts)."""
    if not isinstance(key, str) or not key or key.startswith("/") or "\\" in key:
        raise InvalidBlobKey(f"invalid blob key: {key!r}")
    for part in key.split("/"):
        if part in ("", ".", "..") or not _SEGMENT_RE.match(part) or _TMP_MARK in part:
            raise InvalidBlobKey(f"invalid blob key: {key!r}")
    return key


def chunk_key(site_id: str, session_id: str, seq: int, payload: bytes) -> str:
    """Key of one raw event chunk; the content digest keeps a conflicting retry from overwriting."""
    if not isinstance(seq, int) or seq < 0:
        raise InvalidBlobKey(f"invalid sequence number: {seq!r}")
    digest = hashlib.blake2b(payload, digest_size=6).hexdigest()
    return (
        f"chunks/{validate_id(site_id, 'site id')}/{validate_id(session_id, 'session id')}/"
        f"{seq:08d}-{digest}.zst"
    )


# Segment names: time of the write, a per-process counter and a random tag (two processes, the
# server and a CLI, never pick the same name). Only generated parts, never client strings.
SEGMENT_NAME_RE = re.compile(r"\A\d{9}-\d{6,}-[0-9a-f]{6}\.seg\Z")
_segment_counter = itertools.count()


def segment_key(site_id: str, at_ms: int) -> str:
    """Key of a new segment: many chunks of one site, written by one writer group."""
    at = datetime.fromtimestamp(at_ms / 1000, UTC)
    return (
        f"chunks/{validate_id(site_id, 'site id')}/{at:%Y%m%d}/"
        f"{at:%H%M%S}{at.microsecond // 1000:03d}-{next(_segment_counter) % 1_000_000:06d}-"
        f"{secrets.token_hex(3)}.seg"
    )


def is_segment_key(key: str) -> bool:
    """Whether a chunk key names a segment (several chunks at offsets) rather than one chunk."""
    return bool(SEGMENT_NAME_RE.match(key.rsplit("/", 1)[-1]))


def replay_key(site_id: str, session_id: str, version: int) -> str:
    """Key of a session's replay artifact (versioned so a rebuild never tears a reader)."""
    return (
        f"replays/{validate_id(site_id, 'site id')}/{validate_id(session_id, 'session id')}/"
        f"v{int(version)}.zst"
    )


_CLIP_NAME_RE = re.compile(r"\A(\d{1,18})-[0-9a-f]{8}\.(mp4|png)\Z")


def clip_key(site_id: str, session_id: str, issue_id: int, kind: str) -> str:
    """Key of a new clip file (kind mp4, or png for its poster) of an issue, stored uncompressed.

    A random tag per render: a re-render never overwrites what a reader is streaming.
    """
    if kind not in ("mp4", "png") or not isinstance(issue_id, int) or issue_id < 1:
        raise InvalidBlobKey(f"invalid clip: {issue_id!r}.{kind!r}")
    return (
        f"clips/{validate_id(site_id, 'site id')}/{validate_id(session_id, 'session id')}/"
        f"{issue_id}-{secrets.token_hex(4)}.{kind}"
    )


def parse_clip_key(key: str) -> tuple[str, str, int] | None:
    """(site_id, session_id, issue_id) of a clip key, else None."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "clips" or not is_id(parts[1]):
        return None
    m = _CLIP_NAME_RE.match(parts[3])
    if m is None or not is_session_id(parts[2]):
        return None
    return parts[1], parts[2], int(m.group(1))


_DIGEST_RE = re.compile(r"\A[0-9a-f]{64}\Z")
_SOURCEMAP_NAME_RE = re.compile(r"\A([0-9a-f]{64})\.zst\Z")


def sourcemap_key(site_id: str, digest: str) -> str:
    """Key of one source-map-store blob (minified file, map or scope index) by its sha256.

    Content-addressed per site: identical files uploaded for two releases share one blob.
    """
    if not _DIGEST_RE.match(digest):
        raise InvalidBlobKey(f"invalid content digest: {digest!r}")
    return f"sourcemaps/{validate_id(site_id, 'site id')}/{digest[:2]}/{digest}.zst"


def parse_sourcemap_key(key: str) -> tuple[str, str] | None:
    """(site_id, digest) of a source-map-store key, else None."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] != "sourcemaps" or not is_id(parts[1]):
        return None
    m = _SOURCEMAP_NAME_RE.match(parts[3])
    if m is None or parts[2] != m.group(1)[:2]:
        return None
    return parts[1], m.group(1)


_SHA1_RE = re.compile(r"\A[0-9a-f]{40}\Z")


def upload_chunk_key(site_id: str, sha1: str) -> str:
    """Key of one chunk of a sentry-cli upload, by its SHA-1 (kept until the bundle assembles;
    purge's orphan sweep removes the chunks of uploads that never did)."""
    if not _SHA1_RE.match(sha1):
        raise InvalidBlobKey(f"invalid chunk checksum: {sha1!r}")
    return f"uploads/{validate_id(site_id, 'site id')}/{sha1[:2]}/{sha1}.zst"


_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    comp: zstandard.ZstdCompressor | None = getattr(_local, "comp", None)
    if comp is None:
        comp = zstandard.ZstdCompressor(level=3)
        _local.comp = comp
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    dec: zstandard.ZstdDecompressor | None = getattr(_local, "dec", None)
    if dec is None:
        dec = zstandard.ZstdDecompressor()
        _local.dec = dec
    return dec


def compress(data: bytes) -> bytes:
    """zstd-compress (frames carry their size, so decompress needs no hint)."""
    return bytes(_compressor().compress(data))


def decompress(data: bytes, max_size: int = 1 << 30) -> bytes:
    """Decompress a zstd frame written by compress()."""
    return bytes(_decompressor().decompress(data, max_output_size=max_size))


def split_frames(data: bytes) -> list[bytes]:
    """Decompress every zstd frame of a segment (or a one-frame blob), one entry per frame."""
    frames: list[bytes] = []
    rest = data
    while rest:
        obj = _decompressor().decompressobj()
        frames.append(bytes(obj.decompress(rest)))
        if not obj.eof:
            raise zstandard.ZstdError("truncated zstd frame")
        rest = bytes(obj.unused_data)
    return frames


# Blobs hold recorded sessions: files 0600 and directories 0700, whatever the umask.
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL


def _private_dirs(path: str) -> None:
    missing = []
    at = path
    while at and not os.path.isdir(at):
        missing.append(at)
        parent = os.path.dirname(at)
        if parent == at:
            break
        at = parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(directory, 0o700)


# fsspec options (S3 endpoint, region, credentials) for every remote store this process opens.
# Kept in the environment too: the compute child process opens stores by URL alone.
_OPTIONS_ENV = "RETROSPEC_BLOB_OPTIONS"
_store_options: dict[str, Any] = json.loads(os.environ.get(_OPTIONS_ENV) or "{}")


def set_store_options(options: dict[str, Any]) -> None:
    """Set the fsspec options remote blob stores open with (from Settings.blob_options)."""
    global _store_options
    _store_options = dict(options)
    if options:
        os.environ[_OPTIONS_ENV] = json.dumps(options)
    else:
        os.environ.pop(_OPTIONS_ENV, None)


class CorruptBlob(ValueError):
    """Stored bytes that cannot be what a row says they are (a segment shorter than its frames)."""


class BlobStore:
    """Objects under one fsspec root; every write lands complete or not at all."""

    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        remote = "://" in url and not url.startswith("file://")
        opts = options if options is not None else (_store_options if remote else {})
        fs, root = fsspec.core.url_to_fs(url, **opts)
        self.url = url
        self.fs: Any = fs
        self.root = str(root).rstrip("/")
        self.local = "file" in _protocols(fs)
        self._made: set[str] = set()
        if self.local:
            _private_dirs(self.root)

    def check(self) -> None:
        """At start: the store exists and takes writes, else ConfigError naming blob_url.

        A probe object is written and removed (remote stores only; a local directory is made
        on demand and its errors are the disk guard's).
        """
        if self.local:
            return
        probe = f"{self.root}/.retrospec-probe-{secrets.token_hex(6)}"
        try:
            self.fs.pipe_file(probe, b"ok")
            self.fs.rm_file(probe)
        except FileNotFoundError:
            raise ConfigError(f"blob_url: {self.url} does not exist (create the bucket)") from None
        except PermissionError:
            raise ConfigError(f"blob_url: {self.url} refuses writes (check its policy)") from None
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ConfigError(
                f"blob_url: cannot use {self.url}: {type(exc).__name__} {reason}".rstrip()
            ) from None

    def reachable(self) -> bool:
        """Whether the store answers (for /healthz): its bucket or root directory is there."""
        if self.local:
            return os.path.isdir(self.root)
        self.fs.invalidate_cache()
        return bool(self.fs.exists(self.root.split("/", 1)[0]))

    def path(self, key: str) -> str:
        """Full path of a validated key."""
        return f"{self.root}/{validate_key(key)}"

    def put(self, key: str, data: bytes) -> int:
        """Compress and store data under key; return the stored size."""
        blob = compress(data)
        self.put_raw(key, blob)
        return len(blob)

    def put_raw(self, key: str, blob: bytes) -> None:
        """Store compressed bytes: temp name, then rename, so no reader sees a torn blob."""
        final = self.path(key)
        parent = final.rsplit("/", 1)[0]
        if self.local:
            if parent not in self._made:
                _private_dirs(parent)
                self._made.add(parent)
            tmp = f"{final}{_TMP_MARK}{secrets.token_hex(4)}"
            try:
                fd = os.open(tmp, _NEW_FILE, 0o600)
            except FileNotFoundError:
                # Purge prunes empty directories; make it again rather than trust the cache.
                _private_dirs(parent)
                fd = os.open(tmp, _NEW_FILE, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(blob)
            os.replace(tmp, final)
            return
        # Object stores (s3, gcs, ...) make a single PUT atomic already.
        self.fs.pipe_file(final, blob)

    def put_stream(self, key: str, source: Any, block: int = STREAM_BLOCK) -> int:
        """Store stored-form bytes read from a binary file object, a block at a time; like
        put_raw, the object lands complete or not at all. Returns the bytes written."""
        final = self.path(key)
        written = 0
        if self.local:
            parent = final.rsplit("/", 1)[0]
            _private_dirs(parent)
            tmp = f"{final}{_TMP_MARK}{secrets.token_hex(4)}"
            try:
                with os.fdopen(os.open(tmp, _NEW_FILE, 0o600), "wb") as fh:
                    while data := source.read(block):
                        fh.write(data)
                        written += len(data)
                os.replace(tmp, final)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            return written
        # A multipart upload past the first block, completed only by close(): abort it on error
        # so no truncated object appears under the key.
        out = self.fs.open(final, "wb", block_size=max(block, 5 << 20))
        try:
            while data := source.read(block):
                out.write(data)
                written += len(data)
        except BaseException:
            out.discard()
            out.closed = True
            raise
        out.close()
        return written

    def open_raw(self, key: str) -> Any:
        """A binary file object reading a blob's stored bytes (for copies too big to hold)."""
        if self.local:
            return open(self.path(key), "rb")  # the caller closes it
        return self.fs.open(self.path(key), "rb")

    def get(self, key: str) -> bytes:
        """Read and decompress a one-frame blob; FileNotFoundError if it is gone."""
        if is_segment_key(key):
            # zstd would quietly return the first chunk only; segments are read per row.
            raise ValueError(f"{key} is a segment: read its chunks with read_chunk/split_frames")
        return decompress(self.get_raw(key))

    def get_raw(self, key: str) -> bytes:
        """Read a blob's stored (compressed) bytes."""
        if self.local:
            with open(self.path(key), "rb") as fh:
                return fh.read()
        return bytes(self.fs.cat_file(self.path(key)))

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        """Read length stored bytes at offset (fewer if the blob is shorter)."""
        if offset < 0 or length < 0:
            raise ValueError(f"invalid range {offset}+{length}")
        if self.local:
            with open(self.path(key), "rb") as fh:
                fh.seek(offset)
                return fh.read(length)
        return bytes(self.fs.cat_file(self.path(key), start=offset, end=offset + length))

    def exists(self, key: str) -> bool:
        """Whether key is stored."""
        return bool(self.fs.exists(self.path(key)))

    def mtime(self, key: str) -> float | None:
        """Last write of a blob in epoch seconds (None if missing or unknown)."""
        try:
            if self.local:
                return os.stat(self.path(key)).st_mtime
            info = self.fs.info(self.path(key))
        except FileNotFoundError:
            return None
        stamp = info.get("mtime") or info.get("LastModified")
        if stamp is None:
            return None
        return float(stamp.timestamp() if hasattr(stamp, "timestamp") else stamp)

    def size(self, key: str) -> int:
        """Stored size of a blob in bytes (0 if missing)."""
        try:
            if self.local:
                return os.stat(self.path(key)).st_size
            return int(self.fs.size(self.path(key)))
        except FileNotFoundError:
            return 0

    def delete(self, keys: Iterable[str]) -> int:
        """Delete keys, ignoring ones already gone; return bytes freed."""
        freed = 0
        for key in keys:
            path = self.path(key)
            try:
                if self.local:
                    freed += os.stat(path).st_size
                    os.unlink(path)
                else:
                    freed += int(self.fs.size(path))
                    self.fs.rm_file(path)
            except FileNotFoundError:
                continue
        return freed

    def walk(self, prefix: str) -> Iterator[tuple[str, int, float]]:
        """Yield (key, size, mtime seconds) of every object under prefix, temp files included."""
        base = f"{self.root}/{prefix.strip('/')}"
        if self.local:
            for dirpath, _dirs, files in os.walk(base):
                for name in files:
                    full = os.path.join(dirpath, name)
                    try:
                        st = os.stat(full)
                    except FileNotFoundError:
                        continue
                    yield full[len(self.root) + 1 :], st.st_size, st.st_mtime
            return
        for full, info in self.fs.find(base, detail=True).items():
            mtime = info.get("mtime") or info.get("LastModified") or 0
            stamp = mtime.timestamp() if hasattr(mtime, "timestamp") else float(mtime)
            yield str(full)[len(self.root) + 1 :], int(info.get("size") or 0), stamp

    def remove_path(self, key_or_tmp: str) -> None:
        """Remove one walked path (may be a leftover temp file that validate_key would reject)."""
        if ".." in key_or_tmp.split("/") or key_or_tmp.startswith("/"):
            raise InvalidBlobKey(f"invalid blob path: {key_or_tmp!r}")
        full = f"{self.root}/{key_or_tmp}"
        if self.local:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(full)
        else:
            self.fs.rm_file(full)

    def is_temp(self, key: str) -> bool:
        """Whether a walked path is an unfinished temporary write."""
        return _TMP_MARK in key


def read_frame(blobs: BlobStore, key: str, offset: int | None, length: int | None) -> bytes:
    """The stored (compressed) bytes of one chunk row: its range of a segment, or a whole blob.

    offset/length NULL means the row predates segments and owns the whole object.
    """
    if offset is None or length is None:
        return blobs.get_raw(key)
    data = blobs.get_range(key, offset, length)
    if len(data) != length:
        raise CorruptBlob(f"{key} ends before {offset}+{length}")
    return data


def read_chunk(blobs: BlobStore, key: str, offset: int | None, length: int | None) -> bytes:
    """The raw rrweb events (JSON array bytes) of one chunk row, in either layout."""
    return decompress(read_frame(blobs, key, offset, length))


def _protocols(fs: Any) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)

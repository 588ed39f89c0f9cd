"""Bundle file names from every mainstream bundler lose their content hash; real names stay."""

from __future__ import annotations

import random
import string

import pytest

from retrospec.issues.bundlenames import looks_like_hash8, strip_bundle_hash

STRIPPED = [
    ("main-YGIWARMX.js", "main.js"),  # esbuild [name]-[hash], no digit
    ("main-Q7WARMXZ.js", "main.js"),  # esbuild, exactly one digit (a third of its hashes)
    ("chunk-KPFP7EYU.js", "chunk.js"),  # esbuild --splitting chunk
    ("main-NBALMTDU.css", "main.css"),
    ("polyfills-FFHMD2TL.js", "polyfills.js"),  # Angular >= 17 (esbuild builder)
    ("main-DjXv4U9Z.js", "main.js"),  # Rollup
    ("main-NuG-kfnj.js", "main.js"),  # Rollup hash containing '-'
    ("Settings-CL36R1i_.js", "Settings.js"),  # Vite hash ending in '_'
    ("calendar-view-DJTVVSzv.js", "calendar-view.js"),  # Vite, no digit
    ("index-BTz1DVsl.js", "index.js"),
    ("index-legacy-BdWv3kQ1.js", "index-legacy.js"),  # @vitejs/plugin-legacy
    ("main.91d578f73e5714fa129b.js", "main.js"),  # webpack [contenthash] (20 hex)
    ("main.91d578f73e5714fa129b.js.map", "main.js.map"),
    ("536.ea1fcb711a6c9e01ad91.js", "536.js"),  # webpack numeric chunk id
    ("a69243d21de4c981a8a4.css", ":hash.css"),  # webpack asset named by its hash
    ("static/js/main.2f2115e8.js", "static/js/main.js"),  # CRA
    ("static/js/787.5c50a2f5.chunk.js", "static/js/787.chunk.js"),
    ("js/chunk-vendors.80a1890f.js", "js/chunk-vendors.js"),  # Vue CLI
    ("app.3a6c81d9.js", "app.js"),  # Parcel 2
    ("main.3c1e1b7ad2f5d3f2.js", "main.js"),  # Angular <= 16 (webpack, 16 hex)
    ("main.3f9a1c2b.chunk.js", "main.chunk.js"),
    ("app-3f9a1c.js", "app.js"),  # 6 hex after a dash
    ("/_next/static/chunks/pages/index-962b6bbd3e797a8d.js", "/_next/static/chunks/pages/index.js"),
    ("/_next/static/chunks/app/page-962b6bbd3e797a8d.js", "/_next/static/chunks/app/page.js"),
    ("/_next/static/chunks/framework-e3cbde5644088364.js", "/_next/static/chunks/framework.js"),
    ("/_next/static/chunks/794-c6e3884f9a9b0798.js", "/_next/static/chunks/794.js"),
    ("/_next/static/chunks/0069wf-n15i8d.js", "/_next/static/chunks/:hash.js"),  # Turbopack
    ("/_next/static/chunks/turbopack-0zq_vp9s-5ndp.js", "/_next/static/chunks/turbopack.js"),
]

KEPT = [
    "vendor-utils.js", "app-main.js", "chunk-vendors.js", "polyfills.js", "runtime.js",
    "index.js", "date-fns.js", "vendor-date-fns.js", "lit-html.js", "vendor-lit-html.js",
    "vue-i18n.js", "vendor-vue-i18n.js", "Calendar.js", "app-Calendar.js", "Settings.js",
    "views-Settings.js", "views-UserList.js", "use-dataGrid.js", "MyButton.js",
    "app-calendar.js", "vendor-debounce.js", "torus-web3auth.js", "vendor-190proof.js",
    "handler2.js", "jquery.min.js", "bootstrap.bundle.min.js", "socket.io.js",
    "react-dom.production.min.js", "main.chunk.js", "runtime-main.js", "zone.js",
    "/_next/static/chunks/webpack.js", "/_next/static/yxQBFy5esQuLEYrVoRkA1/_buildManifest.js",
    "remoteEntry.js", "sw.js", "service-worker.js", "firebase-messaging-sw.js",
    "jquery-3.7.1.min.js", "facade.js", "0069wf-n15i8d.js",
]  # fmt: skip


@pytest.mark.parametrize(("name", "expected"), STRIPPED)
def test_bundle_hashes_are_stripped(name: str, expected: str) -> None:
    assert strip_bundle_hash(name) == expected


@pytest.mark.parametrize("name", KEPT)
def test_real_names_are_kept(name: str) -> None:
    assert strip_bundle_hash(name) == name


def test_every_esbuild_hash_is_recognised_whatever_its_digits() -> None:
    # esbuild's hash is base32 of a digest: any mix of A-Z and 2-7, digits or not.
    rng = random.Random(7)
    alphabet = string.ascii_uppercase + "234567"
    for _ in range(2000):
        h = "".join(rng.choice(alphabet) for _ in range(8))
        assert strip_bundle_hash(f"main-{h}.js") == "main.js", h


def test_most_rollup_hashes_are_recognised() -> None:
    rng = random.Random(11)
    alphabet = string.ascii_letters + string.digits + "-_"
    hashes = ["".join(rng.choice(alphabet) for _ in range(8)) for _ in range(4000)]
    missed = [h for h in hashes if strip_bundle_hash(f"index-{h}.js") != "index.js"]
    assert len(missed) / len(hashes) < 0.04  # word-like letter runs stay, the price of no FPs


def test_known_limit_an_upper_case_word_reads_as_an_esbuild_hash() -> None:
    assert looks_like_hash8("SETTINGS")
    assert strip_bundle_hash("app-SETTINGS.js") == "app.js"

"""Grouping rules: real-format Chrome, Firefox and Safari stacks, messages and network failures."""

from __future__ import annotations

import pytest

from retrospec.issues.fingerprint import (
    FailureInput,
    Fingerprint,
    Frame,
    fingerprint,
    parse_stack,
    path_template,
)
from retrospec.issues.messages import normalize_message

PAGE = "https://shop.example.com/cart?step=2"

# One bug (a cart line without a product) as three browsers report it, from two deploys: new
# bundle hashes, shifted lines/columns and different minifier output for anonymous helpers.
CHROME_MSG = "Cannot read properties of undefined (reading 'price')"
CHROME_DEPLOY_1 = """TypeError: Cannot read properties of undefined (reading 'price')
    at lineTotal (https://shop.example.com/static/js/main.3f9a1c2b.js:2:104455)
    at Array.map (<anonymous>)
    at CartSummary (https://shop.example.com/static/js/main.3f9a1c2b.js:2:104301)
    at Object.Sb (https://shop.example.com/static/js/main.3f9a1c2b.js:2:61344)
    at HTMLButtonElement.<anonymous> (https://shop.example.com/static/js/main.3f9a1c2b.js:2:9911)
    at async refreshCart (https://shop.example.com/static/js/main.3f9a1c2b.js:2:7720)"""
CHROME_DEPLOY_2 = """TypeError: Cannot read properties of undefined (reading 'price')
    at lineTotal (https://shop.example.com/static/js/main.7d8e9f00.js:2:104871)
    at Array.map (<anonymous>)
    at CartSummary (https://shop.example.com/static/js/main.7d8e9f00.js:2:104712)
    at Object.Qc (https://shop.example.com/static/js/main.7d8e9f00.js:2:61502)
    at HTMLButtonElement.<anonymous> (https://shop.example.com/static/js/main.7d8e9f00.js:2:9953)
    at async refreshCart (https://shop.example.com/static/js/main.7d8e9f00.js:2:7788)"""
FIREFOX_MSG = 'can\'t access property "price", item.product is undefined'
FIREFOX_DEPLOY_1 = """lineTotal@https://shop.example.com/static/js/main.3f9a1c2b.js:2:104461
CartSummary@https://shop.example.com/static/js/main.3f9a1c2b.js:2:104310
Sb@https://shop.example.com/static/js/main.3f9a1c2b.js:2:61350
bindCart/<@https://shop.example.com/static/js/main.3f9a1c2b.js:2:9920
async*refreshCart@https://shop.example.com/static/js/main.3f9a1c2b.js:2:7731
"""
FIREFOX_DEPLOY_2 = FIREFOX_DEPLOY_1.replace("3f9a1c2b", "7d8e9f00").replace(":2:1044", ":2:1048")
SAFARI_MSG = "undefined is not an object (evaluating 'item.product.price')"
SAFARI_DEPLOY_2 = """lineTotal@https://shop.example.com/static/js/main.7d8e9f00.js:2:104880
map@[native code]
CartSummary@https://shop.example.com/static/js/main.7d8e9f00.js:2:104720
Qc@https://shop.example.com/static/js/main.7d8e9f00.js:2:61509
https://shop.example.com/static/js/main.7d8e9f00.js:2:9960
refreshCart@https://shop.example.com/static/js/main.7d8e9f00.js:2:7790"""


def err(stack: str | None, message: str | None, type_: str | None = "TypeError") -> Fingerprint:
    return fingerprint(
        FailureInput("error", type=type_, message=message, stack=stack, page_url=PAGE)
    )


def net(url: str, status: int | None, method: str | None = "GET") -> Fingerprint:
    return fingerprint(
        FailureInput("network", method=method, request_url=url, status=status, page_url=PAGE)
    )


# --- one bug, one cluster --------------------------------------------------------------------


def test_same_bug_two_deploys_chrome() -> None:
    a, b = err(CHROME_DEPLOY_1, CHROME_MSG), err(CHROME_DEPLOY_2, CHROME_MSG)
    assert a.basis == b.basis == "stack"
    assert a.hash == b.hash
    assert a.key == b.key
    assert "3f9a1c2b" not in a.key and ":104" not in a.key


def test_same_bug_two_deploys_firefox() -> None:
    assert err(FIREFOX_DEPLOY_1, FIREFOX_MSG).hash == err(FIREFOX_DEPLOY_2, FIREFOX_MSG).hash


def test_same_bug_across_chrome_firefox_and_safari() -> None:
    hashes = {
        err(CHROME_DEPLOY_1, CHROME_MSG).hash,
        err(CHROME_DEPLOY_2, CHROME_MSG).hash,
        err(FIREFOX_DEPLOY_1, FIREFOX_MSG).hash,
        err(FIREFOX_DEPLOY_2, FIREFOX_MSG).hash,
        err(SAFARI_DEPLOY_2, SAFARI_MSG).hash,
    }
    assert len(hashes) == 1


def test_message_may_carry_uncaught_and_type_prefix() -> None:
    # window.onerror's message in Chrome is "Uncaught TypeError: ..."; Error.message is not.
    plain = err(CHROME_DEPLOY_1, CHROME_MSG)
    prefixed = err(CHROME_DEPLOY_1, f"Uncaught TypeError: {CHROME_MSG}")
    inferred = err(CHROME_DEPLOY_1, f"TypeError: {CHROME_MSG}", type_=None)
    from_stack_only = err(CHROME_DEPLOY_1, None, type_=None)
    assert plain.hash == prefixed.hash == inferred.hash == from_stack_only.hash
    assert prefixed.title == f"TypeError: {CHROME_MSG}"


def test_unhandled_rejection_and_captured_error_group_with_uncaught_error() -> None:
    kinds = ("error", "unhandledrejection", "custom")
    hashes = {
        fingerprint(FailureInput(k, "TypeError", CHROME_MSG, CHROME_DEPLOY_1)).hash for k in kinds
    }
    assert len(hashes) == 1


# --- different bugs, different clusters ------------------------------------------------------


def test_reading_x_vs_y_from_same_code_are_different() -> None:
    x = err(CHROME_DEPLOY_1, "Cannot read properties of undefined (reading 'x')")
    y = err(CHROME_DEPLOY_1, "Cannot read properties of undefined (reading 'y')")
    assert x.hash != y.hash
    ffx = err(FIREFOX_DEPLOY_1, 'can\'t access property "x", o is undefined')
    ffy = err(FIREFOX_DEPLOY_1, 'can\'t access property "y", o is undefined')
    assert ffx.hash != ffy.hash


def test_two_bugs_in_the_same_file_are_different() -> None:
    checkout = """TypeError: Cannot read properties of null (reading 'addEventListener')
    at initCheckout (https://shop.example.com/static/js/main.3f9a1c2b.js:2:5521)
    at https://shop.example.com/static/js/main.3f9a1c2b.js:2:880"""
    coupon = """TypeError: Cannot read properties of null (reading 'addEventListener')
    at applyCoupon (https://shop.example.com/static/js/main.3f9a1c2b.js:2:7310)
    at https://shop.example.com/static/js/main.3f9a1c2b.js:2:880"""
    msg = "Cannot read properties of null (reading 'addEventListener')"
    assert err(checkout, msg).hash != err(coupon, msg).hash
    # Same frames, different failure.
    assert err(checkout, msg).hash != err(checkout, "Assignment to constant variable.").hash


def test_exception_type_is_part_of_the_stack_fingerprint() -> None:
    assert err(CHROME_DEPLOY_1, "boom").hash != err(CHROME_DEPLOY_1, "boom", "RangeError").hash


def test_console_failures_do_not_merge_with_errors() -> None:
    console = fingerprint(FailureInput("console", message="Order 17 failed"))
    error = fingerprint(FailureInput("error", message="Order 17 failed"))
    assert console.basis == error.basis == "message"
    assert console.hash != error.hash
    again = fingerprint(FailureInput("console", message="Order 942  failed"))
    assert again.hash == console.hash


def test_console_with_stack_uses_frames() -> None:
    fp = fingerprint(FailureInput("console", message="render failed", stack=CHROME_DEPLOY_1))
    assert fp.basis == "stack"
    assert fp.culprit == "lineTotal (/static/js/main.js)"


# --- network ---------------------------------------------------------------------------------


def test_network_ids_share_a_cluster() -> None:
    a = net("https://api.example.com/api/orders/17?expand=items", 500)
    b = net("https://api.example.com/api/orders/942#x", 503)
    assert a.hash == b.hash
    assert a.basis == "network"
    assert a.title == "GET api.example.com/api/orders/:id → 5xx"
    assert a.culprit == "GET /api/orders/:id"
    assert "expand" not in a.key


def test_network_status_class_and_method_split_clusters() -> None:
    url = "https://api.example.com/api/orders/17"
    assert net(url, 404).hash != net(url, 500).hash
    assert net(url, 500).hash != net(url, 500, "POST").hash
    assert net(url, 500, "post").hash == net(url, 500, "POST").hash
    assert net(url, 0).hash == net(url, None).hash
    assert net(url, 0).title.endswith("→ network-error")
    assert net(url, 500).hash != net("https://api.example.com/api/users/17", 500).hash


def test_network_relative_url_uses_page_host() -> None:
    assert net("/api/orders/17", 500).hash == net("https://shop.example.com/api/orders/5", 500).hash


# --- frames ----------------------------------------------------------------------------------


def test_chrome_frame_fields() -> None:
    frames = parse_stack(CHROME_DEPLOY_1)
    assert frames[0] == Frame(
        function="lineTotal",
        path="/static/js/main.js",
        raw_file="https://shop.example.com/static/js/main.3f9a1c2b.js",
        line=2,
        column=104455,
        in_app=True,
    )
    # Array.map (<anonymous>) is native and dropped; Sb is minified and the next frame is
    # anonymous: both normalise to "? /static/js/main.js" and, being adjacent, collapse.
    assert [f.function for f in frames] == ["lineTotal", "CartSummary", None, "refreshCart"]


@pytest.mark.parametrize(
    ("line", "function"),
    [
        ("    at Object.handleClick (https://x.example/app.js:1:2)", "handleClick"),
        ("    at CartView.prototype.render (https://x.example/app.js:1:2)", "render"),
        ("    at new CartStore (https://x.example/app.js:1:2)", "CartStore"),
        ("    at async loadOrders (https://x.example/app.js:1:2)", "loadOrders"),
        ("    at Object.submitForm [as onSubmit] (https://x.example/app.js:1:2)", "submitForm"),
        ("    at Object.Sb [as onClick] (https://x.example/app.js:1:2)", None),
        ("    at HTMLButtonElement.<anonymous> (https://x.example/app.js:1:2)", None),
        ("    at https://x.example/app.js:1:2", None),
        ("    at Object.callback (async https://x.example/app.js:1:2)", "callback"),
        ("loadOrders@https://x.example/app.js:1:2", "loadOrders"),
        ("promise callback*loadOrders@https://x.example/app.js:1:2", "loadOrders"),
        ("App.prototype.foo@https://x.example/app.js:1:2", "foo"),
        ("[2]</Bar.prototype._baz/</<@https://x.example/app.js:1:2", None),
        ("Foo</bar@https://x.example/app.js:1:2", "bar"),
        ("@https://x.example/app.js:1:2", None),
        ("global code@https://x.example/app.js:1:2", None),
        ("a@https://x.example/app.js:1:2", None),
        ("$e@https://x.example/app.js:1:2", None),
        ("https://x.example/app.js:1:2", None),
    ],
)
def test_function_names(line: str, function: str | None) -> None:
    (frame,) = parse_stack(line)
    assert frame.function == function
    assert frame.path == "/app.js"
    assert (frame.line, frame.column) == (1, 2)


@pytest.mark.parametrize(
    "line",
    [
        "    at Array.map (<anonymous>)",
        "    at new Promise (<anonymous>)",
        "    at async Promise.all (index 0)",
        "    at Array.forEach (native)",
        "    at Array.prototype.map (native code)",
        "map@[native code]",
        "[native code]",
        "    at eval (eval at speak (https://x.example/app.js:21:17), <anonymous>:4:18)",
        "    at <anonymous>:1:7",
        "    at VM412:3:11",
        "baz@https://x.example/app.js line 26 > eval line 2 > eval:1:30",
        "@https://x.example/app.js line 39 > Function:1:1",
        "eval code",
        "eval@[native code]",
        "    at eval code (eval code:1:1)",
        "    at e.handle (chrome-extension://hdokiejnpimakedhajhdlcegeplioahd/content.js:1:1)",
        "    at chrome-extension://hdokiejnpimakedhajhdlcegeplioahd/content.js:1:1",
        "r@moz-extension://2b3c4d5e-6f70-4a1b-9c2d-3e4f5a6b7c8d/content.js:1:1",
        "isClaimed@safari-extension://com.grammarly.safari.extension-W8F64X92K3/ee7759dd/G.js:2:9",
        "p_@safari-web-extension://46434E60-F5BD-48A4-80C8-A422C5D16897/scripts/c.js:29:33314",
        "    at ClipperError@safari-extension:(//3284871F-A480-4FFC/commons.js:223036:10)",
        "o@webkit-masked-url://hidden/:2:1234",
        "TypeError: Cannot read properties of undefined (reading 'x')",
        "Contact support@example.com if this persists",
    ],
)
def test_dropped_and_non_frame_lines(line: str) -> None:
    assert parse_stack(line) == []


def test_webpack_dev_eval_wrapper_keeps_its_real_file() -> None:
    # devtool: eval wraps modules in eval, but the location is a real module path.
    (frame,) = parse_stack("    at eval (webpack-internal:///./src/components/Cart.jsx:42:11)")
    assert frame.function is None
    assert frame.path == "/src/components/Cart.jsx"


def test_extension_frames_do_not_change_the_fingerprint() -> None:
    noisy = CHROME_DEPLOY_1.replace(
        "    at Array.map (<anonymous>)",
        "    at Array.map (<anonymous>)\n"
        "    at e.value (chrome-extension://gighmmpiobklfepjocnamgkkbiglidom/inject.js:1:811)",
    )
    assert err(noisy, CHROME_MSG).hash == err(CHROME_DEPLOY_1, CHROME_MSG).hash


def test_vendor_and_cdn_frames_are_not_in_app() -> None:
    stack = """TypeError: Cannot read properties of undefined (reading 'id')
    at selectRow (https://shop.example.com/assets/index-BdWv3kQ1.js:1:3310)
    at Object.Kb (https://unpkg.com/react-dom@18.2.0/umd/react-dom.production.min.js:14:9)
    at Hb (https://shop.example.com/assets/vendor-Cx8Ab3Fk.js:1:442)
    at HTMLDocument.<anonymous> (https://cdnjs.cloudflare.com/ajax/libs/jquery/3.7.1/jquery.min.js:2:83)
    at gtag (https://www.googletagmanager.com/gtag/js?id=G-ABC123:188:271)
    at p (https://cdn.jsdelivr.net/npm/core-js-bundle@3.33.0/minified.js:1:99)
    at r (https://shop.example.com/node_modules/.vite/deps/chunk-5WRI5ZAA.js:2:1)
    at openTable (https://shop.example.com/assets/index-BdWv3kQ1.js:1:2900)"""
    frames = parse_stack(stack)
    assert [f.function for f in frames if f.in_app] == ["selectRow", "openTable"]
    assert len(frames) == 8
    fp = err(stack, "Cannot read properties of undefined (reading 'id')")
    assert fp.frames == tuple(f for f in frames if f.in_app)
    assert "unpkg" not in fp.key and "jquery" not in fp.key and "vendor" not in fp.key
    assert fp.culprit == "selectRow (/assets/index.js)"


def test_cross_site_cdn_frames_need_the_page_url() -> None:
    line = "    at loadWidget (https://cdn.reviewsvendor.io/widget/v2/loader.js:1:99)"
    own_cdn = "    at loadWidget (https://cdn.shop.example.com/static/js/app.3f9a1c2b.js:1:99)"
    assert parse_stack(line)[0].in_app is True
    assert parse_stack(line, page_url=PAGE)[0].in_app is False
    assert parse_stack(own_cdn, page_url=PAGE)[0].in_app is True


def test_all_vendor_stack_falls_back_to_vendor_frames() -> None:
    stack = """Error: Minified React error #185
    at Kb (https://unpkg.com/react-dom@18.2.0/umd/react-dom.production.min.js:154:88)
    at scheduleUpdate (https://unpkg.com/react-dom@18.2.0/umd/react-dom.production.min.js:2:1)"""
    fp = err(stack, "Minified React error #185", "Error")
    assert fp.basis == "stack"
    assert [f.function for f in fp.frames] == [None, "scheduleUpdate"]
    assert all(not f.in_app for f in fp.frames)


def test_extension_only_stack_falls_back_to_message() -> None:
    stack = """TypeError: e.groups is undefined
isClaimed@moz-extension://2b3c4d5e-6f70-4a1b-9c2d-3e4f5a6b7c8d/content.js:2:929865"""
    fp = err(stack, "e.groups is undefined")
    assert fp.basis == "message"
    assert fp.frames == ()
    assert fp.culprit is None


def test_recursion_collapses() -> None:
    one = "    at walk (https://shop.example.com/static/js/tree.3f9a1c2b.js:1:500)\n"
    deep = (
        "RangeError: Maximum call stack size exceeded\n" + one * 9 + one.replace("walk", "render")
    )
    shallow = (
        "RangeError: Maximum call stack size exceeded\n" + one * 2 + one.replace("walk", "render")
    )
    frames = parse_stack(deep)
    assert [f.function for f in frames] == ["walk", "render"]
    msg = "Maximum call stack size exceeded"
    assert err(deep, msg, "RangeError").hash == err(shallow, msg, "RangeError").hash
    # Firefox calls it InternalError: too much recursion.
    ff = "walk@https://shop.example.com/static/js/tree.3f9a1c2b.js:1:510\n" * 5000
    ff += "render@https://shop.example.com/static/js/tree.3f9a1c2b.js:1:90\n"
    # The failing site (walk) is the key, so the cap on parsed lines, which cuts the render
    # frame here, changes nothing: both browsers agree either way.
    assert err(ff, "too much recursion", "InternalError").hash == err(deep, msg, "RangeError").hash
    short_ff = "walk@https://shop.example.com/static/js/tree.3f9a1c2b.js:1:510\n" * 50 + ff[-70:]
    assert (
        err(short_ff, "too much recursion", "InternalError").hash
        == err(deep, msg, "RangeError").hash
    )


def test_minified_names_are_ignored_across_deploys() -> None:
    a = "    at Xe (https://shop.example.com/assets/index-BdWv3kQ1.js:1:100)"
    b = "    at Object.qt (https://shop.example.com/assets/index-D4x9Lm2P.js:1:180)"
    assert err(a, "boom").hash == err(b, "boom").hash


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("https://shop.example.com/static/js/main.3f9a1c2b.js", "/static/js/main.js"),
        ("https://shop.example.com/static/js/main.3f9a1c2b.chunk.js", "/static/js/main.chunk.js"),
        ("https://shop.example.com/static/js/2.a1b2c3d4.chunk.js", "/static/js/2.chunk.js"),
        ("https://shop.example.com/js/app-3F9A1C2B.js", "/js/app.js"),
        ("https://shop.example.com/js/app-QWERTY23.js", "/js/app.js"),
        ("https://shop.example.com/js/chunk.abc123def.min.js", "/js/chunk.min.js"),
        ("https://shop.example.com/assets/index-BdWv3kQ1.js", "/assets/index.js"),
        ("https://shop.example.com/assets/index-B4qY_t-Z.js", "/assets/index.js"),
        ("https://shop.example.com/main.8f3b2a1c4d5e6f70.js", "/main.js"),
        (
            "https://shop.example.com/_next/static/chunks/pages/orders/[id]-abc123def4567890.js",
            "/_next/static/chunks/pages/orders/[id].js",
        ),
        (
            "https://shop.example.com/_next/static/Xk9aB2cD3eF4gH5iJ6kL7/_buildManifest.js",
            "/_next/static/:hash/_buildManifest.js",
        ),
        ("https://shop.example.com/static/3f9a1c2b/app.js", "/static/:hash/app.js"),
        ("https://shop.example.com/static/v1.4.2/app.js", "/static/:ver/app.js"),
        ("https://shop.example.com/app.js?v=3f9a1c2b#L10", "/app.js"),
        ("https://shop.example.com/orders/17", "/orders/:id"),
        ("https://shop.example.com/", "/"),
        (
            "http://localhost:5173/src/components/Cart.tsx?t=1700000000000",
            "/src/components/Cart.tsx",
        ),
        ("webpack-internal:///./src/App.js", "/src/App.js"),
        ("file:///G:/js/stacktrace.js", "/G:/js/stacktrace.js"),
        ("blob:http%3A//localhost%3A8080/abfc40e9-4742-44ed-9dcd-af8f99a29379", "/:uuid"),
        ("https://shop.example.com/js/click-handler2.js", "/js/click-handler2.js"),
        ("https://shop.example.com/js/use-checkout.js", "/js/use-checkout.js"),
        ("https://shop.example.com/js/jquery-3.6.0.min.js", "/js/jquery-3.6.0.min.js"),
    ],
)
def test_frame_paths(url: str, path: str) -> None:
    (frame,) = parse_stack(f"    at run ({url}:10:20)")
    assert frame.path == path
    assert frame.raw_file == url


def test_query_strings_never_reach_keys() -> None:
    stack = """Error: boom
    at run (https://shop.example.com/app.js?v=SECRET123&token=abc:1:2)"""
    fp = err(stack, "boom", "Error")
    assert "SECRET" not in fp.key and "token" not in fp.key
    assert "\nrun <entry>.js\n" in fp.key
    fp_net = net("https://api.example.com/search?q=private+stuff&token=SECRET", 500)
    assert "SECRET" not in fp_net.key and "private" not in fp_net.key


# --- explicit, fallback, titles --------------------------------------------------------------


def test_explicit_fingerprint_wins() -> None:
    a = fingerprint(
        FailureInput(
            "error", "TypeError", CHROME_MSG, CHROME_DEPLOY_1, explicit=("checkout-flaky",)
        )
    )
    b = fingerprint(
        FailureInput(
            "network", request_url="https://x.example/a", status=500, explicit=("checkout-flaky",)
        )
    )
    assert a.basis == b.basis == "explicit"
    assert a.hash == b.hash
    assert a.title.startswith("TypeError:") and a.frames  # display info still from the failure


def test_explicit_default_placeholder_extends_the_default() -> None:
    base = err(CHROME_DEPLOY_1, CHROME_MSG)
    ext = fingerprint(
        FailureInput(
            "error",
            "TypeError",
            CHROME_MSG,
            CHROME_DEPLOY_1,
            explicit=("{{ default }}", "tenant-a"),
        )
    )
    other = fingerprint(
        FailureInput(
            "error",
            "TypeError",
            CHROME_MSG,
            CHROME_DEPLOY_1,
            explicit=("{{ default }}", "tenant-b"),
        )
    )
    assert ext.basis == "explicit"
    assert base.key in ext.key
    assert len({base.hash, ext.hash, other.hash}) == 3


def test_empty_explicit_is_ignored() -> None:
    base = err(CHROME_DEPLOY_1, CHROME_MSG)
    blank = fingerprint(
        FailureInput(
            "error", "TypeError", CHROME_MSG, CHROME_DEPLOY_1, page_url=PAGE, explicit=("", " ")
        )
    )
    assert blank.hash == base.hash and blank.basis == "stack"


def test_message_fallback_normalises_variable_parts() -> None:
    a = err(
        None,
        "Payment 17 for jane@example.com from 10.1.2.3 failed: https://pay.example.com/p/17?x=1 "
        "ref 550e8400-e29b-41d4-a716-446655440000 trace 0x7fff5fbff8c8 digest 3f9a1c2b4d5e6f70",
        "Error",
    )
    b = err(
        None,
        "Payment 942 for bob@example.org from 192.168.0.77 failed: https://pay.example.com/p/942 "
        "ref 123e4567-e89b-12d3-a456-426614174000 trace 0x1 digest 9a8b7c6d5e4f3a2b",
        "Error",
    )
    assert a.basis == b.basis == "message"
    assert a.hash == b.hash
    assert a.key.endswith(
        "Payment <val> for <email> from <ip> failed: <url> ref <uuid> trace <hex> digest <hex>"
    )
    assert a.title.startswith("Error: Payment 17 for jane@example.com")  # original kept for display
    assert (
        err(None, "Payment 17 failed", "Error").hash
        != err(None, "Payment 17 failed", "TypeError").hash
    )


def test_titles_are_capped_and_collapsed() -> None:
    fp = err(None, "x" * 5000 + "\n\n  tail", "Error")
    assert len(fp.title) <= 200
    assert "\n" not in fp.title
    assert len(fp.key) < 400
    empty = fingerprint(FailureInput("unhandledrejection"))
    assert empty.basis == "message" and empty.title
    typed = fingerprint(
        FailureInput("unhandledrejection", type="UnhandledRejection", message="[object Object]")
    )
    assert typed.title == "UnhandledRejection: [object Object]"


def test_hash_shape_and_odd_input() -> None:
    fp = err(None, "lone surrogate \ud800 here", "Error")
    assert len(fp.hash) == 32 and int(fp.hash, 16) >= 0
    assert parse_stack(None) == [] and parse_stack("") == []
    assert normalize_message(None) == "" and normalize_message("   ") == ""


# --- message normalisation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "Cannot read properties of undefined (reading 'x')",
            "cannot access property 'x' of undefined",
        ),
        ("Cannot read property 'x' of undefined", "cannot access property 'x' of undefined"),
        ("Cannot set properties of null (setting 'x')", "cannot access property 'x' of null"),
        ('can\'t access property "x", o is undefined', "cannot access property 'x' of undefined"),
        ('can\'t access property "x" of null', "cannot access property 'x' of null"),
        (
            "undefined is not an object (evaluating 'o.x')",
            "cannot access property 'x' of undefined",
        ),
        ("null is not an object (evaluating 'a.b[0].x')", "cannot access property 'x' of null"),
        (
            "'null' is not an object (evaluating 'x.undef')",
            "cannot access property 'undef' of null",
        ),
        (
            "Cannot read properties of undefined (reading '0')",
            "cannot access property '<num>' of undefined",
        ),
        (
            "can't access property 0, rows is undefined",
            "cannot access property '<num>' of undefined",
        ),
        (
            "Cannot destructure property 'user' of 'e' as it is undefined.",
            "cannot access property 'user' of undefined",
        ),
        ("t.map is not a function", "map is not a function"),
        ("this.props.items.map is not a function", "map is not a function"),
        ("o.map is not a function. (In 'o.map(f)', 'o.map' is undefined)", "map is not a function"),
        ("(0 , _api.fetchOrders) is not a function", "fetchOrders is not a function"),
        ("e is not a function", "<min> is not a function"),
        ("$ is not a function", "$ is not a function"),
        ("Object(...) is not a function", "Object(...) is not a function"),
        ("n is not iterable", "<min> is not iterable"),
        (
            "undefined is not iterable (cannot read property Symbol(Symbol.iterator))",
            "undefined is not iterable",
        ),
        ("Can't find variable: gtag", "gtag is not defined"),
        ("gtag is not defined", "gtag is not defined"),
        ("Failed to fetch", "network request failed"),
        ("NetworkError when attempting to fetch resource.", "network request failed"),
        ("Load failed", "network request failed"),
        ("too much recursion", "maximum call stack size exceeded"),
        ("Unexpected token '<', \"<!DOCTYPE \"... is not valid JSON", "invalid json"),
        ("JSON.parse: unexpected character at line 1 column 1 of the JSON data", "invalid json"),
        ("JSON Parse error: Unrecognized token '<'", "invalid json"),
        ("Uncaught (in promise) Error: Request 42 timed out", "Error: Request <num> timed out"),
        (
            "Loading chunk 787 failed.\n(error: https://x.example/static/js/787.4f3a2b1c.chunk.js)",
            "Loading chunk <num> failed. (error: <url>)",
        ),
        ("timeout of 5000ms exceeded", "timeout of <num>ms exceeded"),
        ("h1 utf8 es2015 user42 v2", "h1 utf8 es2015 user42 v2"),
        (
            "at 12:30:45 from ::1 and fe80::1ff:fe23:4567:890a",
            "at <num>:<num>:<num> from <ip> and <ip>",
        ),
        ("Mongo id 507f1f77bcf86cd799439011 missing", "Mongo id <hex> missing"),
        ("faced a decade of facades", "faced a decade of facades"),
        ("  many\t\tspaces \n here ", "many spaces here"),
    ],
)
def test_normalize_message(message: str, expected: str) -> None:
    assert normalize_message(message) == expected


def test_normalize_message_caps_length() -> None:
    assert len(normalize_message("word " * 2000)) == 300


# --- path templates --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.example.com/api/orders/17", ("api.example.com", "/api/orders/:id")),
        (
            "https://API.example.com:443/api/orders/942/?page=2#top",
            ("api.example.com", "/api/orders/:id"),
        ),
        ("http://localhost:8000/api/orders/17", ("localhost:8000", "/api/orders/:id")),
        ("/api/users/550e8400-e29b-41d4-a716-446655440000/avatar", ("", "/api/users/:uuid/avatar")),
        ("https://x.example/objects/507f1f77bcf86cd799439011", ("x.example", "/objects/:hash")),
        (
            "https://x.example/files/3f9a1c2b4d5e6f708a9b0c1d2e3f4a5b6c7d8e9f",
            ("x.example", "/files/:hash"),
        ),
        ("https://x.example/s/V1StGXR8_Z5jdHi6B-myT", ("x.example", "/s/:hash")),
        (
            "https://x.example/docs/getting-started-with-python3",
            ("x.example", "/docs/getting-started-with-python3"),
        ),
        ("https://x.example/api/v2/orders/17.json", ("x.example", "/api/v2/orders/:id.json")),
        ("https://x.example/users/jane@example.com", ("x.example", "/users/:email")),
        ("https://user:pw@x.example/", ("x.example", "/")),
        ("//cdn.example.com/a", ("cdn.example.com", "/a")),
        ("https://x.example", ("x.example", "/")),
    ],
)
def test_path_template(url: str, expected: tuple[str, str]) -> None:
    assert path_template(url) == expected


def test_stack_without_message_uses_only_a_real_first_line() -> None:
    # Safari stacks have no message line; their first line is a frame, not a message.
    fp = err(SAFARI_DEPLOY_2, None)
    assert fp.title == "TypeError"
    assert fp.key.split("\n")[3] == ""


def test_very_long_lines_and_stacks_stay_bounded() -> None:
    long_url = "https://shop.example.com/app.js?" + "q=1&" * 5000
    (frame,) = parse_stack(f"    at run ({long_url}:1:2)")
    assert frame.path == "/app.js"
    stack = "    at run (https://shop.example.com/a.js:1:2)\n" * 10 + "x\n" * 100_000
    assert len(parse_stack(stack)) == 1
    assert len(normalize_message("7 " * 100_000)) == 300
    assert parse_stack("    at run (https://shop.example.com/a.js:1:" + "9" * 5000 + ")") == []


def test_error_monitoring_sdk_wrappers_are_not_in_app() -> None:
    stack = (
        "TypeError: x is undefined\n"
        "    at computeTotal (https://shop.example/app.js:6:23)\n"
        "    at HTMLButtonElement.sentryWrapped (https://shop.example/app.js:90:1)\n"
        "    at HTMLButtonElement.n (https://shop.example/dist/sentry.bundle.js:495:1015)\n"
        "    at r (https://shop.example/node_modules/@sentry/browser/esm/helpers.js:9:9)\n"
        "    at bootSentryConfig (https://shop.example/js/sentryconfig.js:1:2)"
    )
    frames = parse_stack(stack)
    assert [f.in_app for f in frames] == [True, False, False, False, True]

"""Grouping version 2, one test per class of failure the corpus found splitting or merging.

Each builds the failures as browsers report them (minified bundles, two deploys) and checks that
one bug is one key and two bugs are two.
"""

from __future__ import annotations

from dataclasses import replace

from retrospec.issues.fingerprint import FailureInput, Fingerprint, Frame, fingerprint, parse_stack

PAGE = "https://shop.example.com/orders/1377"


def err(stack: str, message: str, type_: str = "TypeError", kind: str = "error") -> Fingerprint:
    return fingerprint(FailureInput(kind, type_, message, stack, page_url=PAGE))


def chrome(message: str, frames: list[tuple[str, str, int]], type_: str = "TypeError") -> str:
    lines = [f"{type_}: {message}"]
    lines += [f"    at {fn} (https://shop.example.com{file}:1:{col})" for fn, file, col in frames]
    return "\n".join(lines)


def read(prop: str, nullish: str = "undefined") -> str:
    return f"Cannot read properties of {nullish} (reading '{prop}')"


# --- bundle names and release directories ---------------------------------------------------


def test_esbuild_hashes_with_one_digit_do_not_split_deploys() -> None:
    d1 = chrome(read("total"), [("e", "/assets/main-Q7WARMXZ.js", 2301)])
    d2 = chrome(read("total"), [("t", "/assets/v2/main-KPLXYZAW.js", 2417)])
    assert err(d1, read("total")).hash == err(d2, read("total")).hash


def test_per_release_directories_and_entry_names_do_not_split() -> None:
    places = [
        "/assets/index-BTz1DVsl.js",  # Vite
        "/static/2.0.0/main-NuG-kfnj.js",  # Rollup in a per-version directory
        "/r/2025.06.2/app.3a6c81d9.js",  # Parcel in a per-release directory
        "/static/js/main.2f2115e8.js",  # CRA
        "/_next/static/chunks/pages/index-962b6bbd3e797a8d.js",  # Next
    ]
    keys = {err(chrome(read("total"), [("e", p, 99)]), read("total")).hash for p in places}
    assert len(keys) == 1
    # A different bundle of the same site (a lazy chunk) is a different site in the key.
    chunk = chrome(read("total"), [("e", "/assets/checkout-BdWv3kQ1.js", 99)])
    assert err(chunk, read("total")).hash not in keys


# --- user data in messages ------------------------------------------------------------------


def test_app_messages_with_user_data_group_when_the_site_agrees() -> None:
    frames = [("applyCoupon", "/assets/main-Q7WARMXZ.js", 2301)]
    messages = [
        'Coupon "SPRING-2024" is not valid or has expired',
        'Coupon "FREESHIP" is not valid or has expired',
        "Coupon 'x7q-991' is not valid or has expired",
    ]
    keys = {err(chrome(m, frames, "CouponError"), m, "CouponError").hash for m in messages}
    assert len(keys) == 1
    routes = ['No route matches "/orders/1234/edit"', 'No route matches "/p/rain-jacket-xl"']
    selectors = ["Element not found: #sku-12345 .qty", "Element not found: #sku-4711 .qty"]
    people = ["@kenji has no access to notebook", "@ines.dias has no access to notebook"]
    codes = ["Unknown project ACME in ACME-17", "Unknown project OPS in OPS-9"]
    issues = ['[{"path":["email"],"message":"Invalid"}]', '[{"path":["zip"],"code":"too_small"}]']
    for group in (routes, selectors, people, codes, issues):
        assert len({err(chrome(m, frames, "Error"), m, "Error").hash for m in group}) == 1, group
    # Two different messages thrown at one site stay two (a helper that throws what it's told).
    assert (
        err(chrome(routes[0], frames, "Error"), routes[0], "Error").hash
        != err(chrome(selectors[0], frames, "Error"), selectors[0], "Error").hash
    )


def test_engine_messages_naming_code_identifiers_still_split() -> None:
    frames = [("e", "/assets/main-Q7WARMXZ.js", 2301)]
    assert (
        err(chrome(read("x"), frames), read("x")).hash
        != err(chrome(read("y"), frames), read("y")).hash
    )
    assert (
        err(chrome("a.map is not a function", frames), "a.map is not a function").hash
        != err(chrome("a.filter is not a function", frames), "a.filter is not a function").hash
    )


def test_regexp_syntax_errors_are_one_bug_whatever_the_pattern() -> None:
    frames = [("e", "/assets/main-Q7WARMXZ.js", 77)]
    texts = [
        "Invalid regular expression: /fix (login/i: Unterminated group",
        "Invalid regular expression: /[a-/i: Unterminated character class",
        "Invalid regular expression: /*urgent/i: Nothing to repeat",
    ]
    assert len({err(chrome(t, frames, "SyntaxError"), t, "SyntaxError").hash for t in texts}) == 1


# --- null vs undefined ----------------------------------------------------------------------


def test_null_and_undefined_at_one_site_are_one_bug() -> None:
    frames = [("renderSummary", "/assets/main-Q7WARMXZ.js", 510)]
    chrome_null = err(chrome(read("name", "null"), frames), read("name", "null"))
    chrome_undefined = err(chrome(read("name"), frames), read("name"))
    safari = err(
        "renderSummary@https://shop.example.com/assets/main-Q7WARMXZ.js:1:512",
        "null is not an object (evaluating 'order.customer.name')",
    )
    assert chrome_null.hash == chrome_undefined.hash == safari.hash


# --- dynamic keys versus two reads ----------------------------------------------------------


def mapped(stack: str, line: str) -> tuple[Frame, ...]:
    """The frames a source map gives: original file and function, and the failing line."""
    top, *rest = parse_stack(stack)
    original = replace(
        top, path="src/catalog.js", function="sortProducts", mapped=True, context_line=line
    )
    return (original, *rest)


def with_frames(message: str, frames: tuple[Frame, ...]) -> Fingerprint:
    return fingerprint(FailureInput("error", "TypeError", message, None, PAGE, frames=frames))


def test_a_computed_key_read_at_one_line_is_one_bug_with_source_maps() -> None:
    stack = chrome(read("price"), [("e", "/assets/main-Q7WARMXZ.js", 990)])
    line = "  return sortBy(products, (p) => p.stats[field]);"
    keys = {with_frames(read(f), mapped(stack, line)).hash for f in ("price", "rating", "stock")}
    assert len(keys) == 1


def test_two_different_reads_in_one_function_stay_apart() -> None:
    stack = chrome(read("name"), [("e", "/assets/main-Q7WARMXZ.js", 510)])
    name = with_frames(read("name"), mapped(stack, "  const who = order.customer.name;"))
    city = with_frames(read("city"), mapped(stack, "  const to = order.shipping.address.city;"))
    assert name.hash != city.hash
    # Without maps the property name tells them apart.
    assert (
        err(stack, read("name")).hash != err(stack.replace("'name'", "'city'"), read("city")).hash
    )
    # Two reads on one line: the property is written there, so it still counts.
    line = "  return `${order.customer.name} in ${order.shipping.address.city}`;"
    assert (
        with_frames(read("name"), mapped(stack, line)).hash
        != with_frames(read("city"), mapped(stack, line)).hash
    )


# --- call paths -----------------------------------------------------------------------------


def test_one_bug_reached_through_different_call_paths_is_one_bug() -> None:
    site = ("addToCart", "/assets/main-Q7WARMXZ.js", 120)
    from_catalog = chrome(read("0"), [site, ("onAdd", "/assets/main-Q7WARMXZ.js", 40)])
    from_orders = chrome(
        read("0"),
        [site, ("buyAgain", "/assets/orders-BdWv3kQ1.js", 12), ("e", "/assets/main.js", 3)],
    )
    quick_add = chrome(read("0"), [site, ("onKey", "/assets/main-Q7WARMXZ.js", 900)])
    keys = {err(s, read("0")).hash for s in (from_catalog, from_orders, quick_add)}
    assert len(keys) == 1


# --- framework-caught errors ----------------------------------------------------------------


def test_console_text_with_a_stack_is_that_error() -> None:
    stack = chrome(read("length", "null"), [("editTodo", "/assets/main-Q7WARMXZ.js", 300)])
    uncaught = err(stack, read("length", "null"))
    # AngularJS's $log formats the error as text; the SDK sent the console call's stack.
    logged = fingerprint(
        FailureInput(
            "console",
            None,
            stack,
            "    at consoleLog (https://shop.example.com/assets/main-Q7WARMXZ.js:1:9)",
            page_url=PAGE,
        )
    )
    assert logged.family == "error" and logged.title == f"TypeError: {read('length', 'null')}"
    assert logged.hash == uncaught.hash
    # An Error object older SDKs sent as console output: its own type and stack.
    old_sdk = fingerprint(
        FailureInput("console", "TypeError", f"TypeError: {read('length')}", stack, PAGE)
    )
    assert old_sdk.hash == uncaught.hash
    # Console text without a stack stays console output.
    plain = fingerprint(FailureInput("console", None, "Failed to load user 42", None, PAGE))
    assert plain.family == "console"


def test_network_ids_of_any_shape_are_templated() -> None:
    def net(url: str) -> str:
        return fingerprint(FailureInput("network", method="POST", request_url=url, status=500)).hash

    urls = [
        "https://shop.example.com/api/carts/c9zt1dvws/items",
        "https://shop.example.com/api/carts/c1f7fo6y9/items",
        "https://shop.example.com/api/carts/42/items",
    ]
    assert len({net(u) for u in urls}) == 1
    assert net("https://shop.example.com/api/v2/items") != net(urls[0])

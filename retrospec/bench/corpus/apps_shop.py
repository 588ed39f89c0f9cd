"""Outfitters shop: a multi-module vanilla app written for the corpus (apps/shop/), using
lodash-es, immer, dayjs, date-fns and zod from npm, with a lazily loaded checkout chunk."""

from __future__ import annotations

from retrospec.bench.corpus.model import App, Bug, Edit, ServerRule, Step, Variant

FILES = [
    "index.html",
    "main.js",
    "data.js",
    "ui.js",
    "cart.js",
    "catalog.js",
    "orders.js",
    "router.js",
    "checkout.js",
]
ORDERS: tuple[Step, ...] = (("click", "#nav-orders"),)
CHECKOUT: tuple[Step, ...] = (("click", "#nav-checkout"), ("wait", "50"))


def _go(path: str) -> tuple[Step, ...]:
    return (("fill", "#goto", path), ("click", "#goto-btn"))


def _v(label: str, *steps: Step) -> Variant:
    return Variant(label, tuple(steps))


SHOP = App(
    name="shop",
    framework="vanilla (ES modules)",
    origin="written for the corpus: apps/shop/",
    packages=("lodash-es", "immer", "dayjs", "date-fns", "zod"),
    copies=tuple((f, f"apps/shop/{f}") for f in FILES),
    port=(),
    server_rules=(
        ServerRule("GET", r"^/api/orders/\d+$", 502, '{"error": "upstream timeout"}'),
        ServerRule("POST", r"^/api/carts/\w+/items$", 500),
    ),
    clean_steps=(
        *ORDERS,
        ("click", "#order-1234 .view"),
        ("click", "#nav-catalog"),
        ("click", "#sku-88123 .details"),
        ("fill", "#coupon", "WELCOME10"),
        ("click", "#apply-coupon"),
        *CHECKOUT,
        ("fill", "#email", "ana@example.com"),
        ("fill", "#zip", "4000-322"),
        ("click", "#place-order"),
        ("fill", "#delivery", "2024-06-01"),
        ("click", "#delivery-btn"),
    ),
    bugs=(
        Bug(
            id="S1",
            app="shop",
            classes=("user-data",),
            description="applyCoupon throws CouponError quoting the code instead of telling the user",
            edits=(
                Edit(
                    "catalog.js",
                    "    toast(`That coupon is not valid.`);\n    return 0;",
                    '    throw new CouponError(`Coupon "${code}" is not valid or has expired`);',
                ),
            ),
            variants=tuple(
                _v(c, ("fill", "#coupon", c), ("click", "#apply-coupon"))
                for c in ("SPRING-2024", "FREESHIP", "x7q-991")
            ),
        ),
        Bug(
            id="S2",
            app="shop",
            classes=("user-data",),
            description="locate throws with the CSS selector it built from the SKU typed",
            edits=(
                Edit(
                    "catalog.js",
                    '    toast("No such product on this page.");\n    return null;',
                    "    throw new Error(`Element not found: #sku-${sku} .qty`);",
                ),
            ),
            variants=tuple(
                _v(s, ("fill", "#locate", s), ("click", "#locate-btn"))
                for s in ("12345", "99999", "4711")
            ),
        ),
        Bug(
            id="S3",
            app="shop",
            classes=("user-data",),
            description="navigate throws for unknown paths, quoting the path (ids, user names, slugs)",
            edits=(
                Edit(
                    "router.js",
                    '    document.getElementById("view").textContent = "Page not found";\n'
                    "    return false;",
                    '    throw new Error(`No route matches "${path}"`);',
                ),
            ),
            variants=tuple(
                _v(p, *_go(p))
                for p in ("/orders/1234/edit", "/account/ana.lima/settings", "/p/rain-jacket-xl")
            ),
        ),
        Bug(
            id="S4",
            app="shop",
            classes=("dynamic-key", "vendor-thrown"),
            description="sortProducts reads p.stats[field] through lodash sortBy; the gift card has no "
            "stats (undefined[field], a different field per column)",
            edits=(
                Edit(
                    "catalog.js", "(p) => (p.stats ? p.stats[field] : 0)", "(p) => p.stats[field]"
                ),
            ),
            variants=tuple(
                _v(f, ("click", f"button[data-field={f}]")) for f in ("price", "rating", "stock")
            ),
        ),
        Bug(
            id="S5",
            app="shop",
            classes=("two-reads", "null-vs-undefined"),
            description="renderSummary reads order.customer.name; guest orders have customer null. "
            "Same function as S6, a different read",
            edits=(
                Edit(
                    "orders.js",
                    'order.customer ? order.customer.name : "Guest"',
                    "order.customer.name",
                ),
            ),
            variants=(
                _v("view button", *ORDERS, ("click", "#order-1377 .view")),
                _v("route /orders/1377", *_go("/orders/1377")),
                _v(
                    "after another order",
                    *ORDERS,
                    ("click", "#order-1234 .view"),
                    ("click", "#order-1377 .view"),
                ),
            ),
        ),
        Bug(
            id="S6",
            app="shop",
            classes=("two-reads",),
            description="renderSummary reads order.shipping.address.city; pick-up orders have no "
            "address. Same function as S5, a different read",
            edits=(
                Edit(
                    "orders.js",
                    "order.shipping.address ? order.shipping.address.city : order.shipping.store",
                    "order.shipping.address.city",
                ),
            ),
            variants=(
                _v("view button", *ORDERS, ("click", "#order-1301 .view")),
                _v("route /orders/1301", *_go("/orders/1301")),
                _v(
                    "after another order",
                    *ORDERS,
                    ("click", "#order-1234 .view"),
                    ("click", "#order-1301 .view"),
                ),
            ),
        ),
        Bug(
            id="S7",
            app="shop",
            classes=("null-vs-undefined",),
            description="discountLabel reads product.discount.percent; discount is null for some "
            "products and missing for others",
            edits=(
                Edit(
                    "catalog.js",
                    'product.discount ? `-${product.discount.percent}%` : ""',
                    'product.discount.percent ? `-${product.discount.percent}%` : ""',
                ),
            ),
            variants=(
                _v("socks (null)", ("click", "#sku-51007 .details")),
                _v("rain jacket (missing)", ("click", "#sku-30211 .details")),
                _v("gift card (missing)", ("click", "#sku-90001 .details")),
            ),
        ),
        Bug(
            id="S8",
            app="shop",
            classes=("two-controls",),
            description="addToCart reads product.variants[0]; the gift card has no variants. Reached "
            "from the catalog's Add button, an order's Buy again, and quick add",
            edits=(
                Edit(
                    "cart.js",
                    "product.variants ? product.variants[0] : null",
                    "product.variants[0]",
                ),
            ),
            variants=(
                _v("catalog add", ("click", "#sku-90001 .add")),
                _v("buy again", *ORDERS, ("click", "#order-1301 .buy-again")),
                _v("quick add", ("fill", "#quick-add", "90001"), ("press", "#quick-add", "Enter")),
            ),
        ),
        Bug(
            id="S9",
            app="shop",
            classes=("network", "rejection", "user-data"),
            description="Refresh fetches /api/orders/:id (the server answers 502) and rejects with the "
            "order id in the message; the click handler lost its .catch",
            edits=(
                Edit(
                    "orders.js",
                    "onClick: () => refreshOrder(order.id).catch((e) => toast(e.message))",
                    "onClick: () => refreshOrder(order.id)",
                ),
            ),
            variants=tuple(
                _v(f"order {i}", *ORDERS, ("click", f"#order-{i} .refresh"))
                for i in (1234, 1301, 1377)
            ),
            expect=("network", "unhandledrejection"),
        ),
        Bug(
            id="S10",
            app="shop",
            classes=("network",),
            description="Server answers 500 to POST /api/carts/:cartId/items; the app handles it",
            edits=(),
            variants=(
                _v("socks", ("click", "#sku-51007 .add")),
                _v("headlamp", ("click", "#sku-77450 .add")),
                _v(
                    "shoes via quick add",
                    ("fill", "#quick-add", "88123"),
                    ("press", "#quick-add", "Enter"),
                ),
            ),
            expect=("network",),
        ),
        Bug(
            id="S11",
            app="shop",
            classes=("vendor-thrown",),
            description="placeOrder calls zod's parse instead of safeParse; ZodError's message lists "
            "the failing fields (different per session)",
            edits=(
                Edit(
                    "checkout.js",
                    "  const result = OrderForm.safeParse(form);\n  if (!result.success) {\n"
                    '    message("Please check: " + result.error.issues.map((i) => i.path.join(".")).join(", "));\n'
                    '    return null;\n  }\n  message("Order placed");\n  return result.data;',
                    '  const data = OrderForm.parse(form);\n  message("Order placed");\n  return data;',
                ),
            ),
            variants=tuple(
                _v(
                    label,
                    *CHECKOUT,
                    ("fill", "#email", email),
                    ("fill", "#zip", zip_),
                    ("click", "#place-order"),
                )
                for label, email, zip_ in (
                    ("bad email", "ana@", "4000-322"),
                    ("short zip", "joao@example.pt", "12"),
                    ("both empty", "", ""),
                )
            ),
        ),
        Bug(
            id="S12",
            app="shop",
            classes=("vendor-thrown",),
            description="deliveryLabel lost its isValid check; date-fns format throws RangeError",
            edits=(
                Edit(
                    "checkout.js",
                    '  if (!isValid(date)) return "Pick a date like 2024-06-01";\n',
                    "",
                ),
            ),
            variants=tuple(
                _v(d, *CHECKOUT, ("fill", "#delivery", d), ("click", "#delivery-btn"))
                for d in ("31/12/2024", "tomorrow", "2024-13-45")
            ),
        ),
        Bug(
            id="S13",
            app="shop",
            classes=("rejection", "user-data"),
            description="Export rejects with a plain object (code, user, message), unhandled",
            edits=(
                Edit(
                    "orders.js",
                    'onClick: () => requestExport(document.getElementById("export-user").value)'
                    ".catch((e) => toast(e.message))",
                    'onClick: () => requestExport(document.getElementById("export-user").value)',
                ),
            ),
            variants=tuple(
                _v(u, *ORDERS, ("select", "#export-user", u), ("click", "#export"))
                for u in ("ana.lima", "joao.pereira", "mei.tanaka")
            ),
            expect=("unhandledrejection",),
        ),
        Bug(
            id="S14",
            app="shop",
            classes=("typo", "chunk"),
            description="estimateShipping (lazily loaded checkout chunk) reads totl (ReferenceError)",
            edits=(
                Edit(
                    "checkout.js",
                    "return total > 100 ? 0 : 4.9 + total * 0.01;",
                    "return total > 100 ? 0 : 4.9 + totl * 0.01;",
                ),
            ),
            variants=(
                _v("nav", *CHECKOUT, ("click", "#estimate")),
                _v("route", *_go("/checkout"), ("wait", "50"), ("click", "#estimate")),
                _v(
                    "after email",
                    *CHECKOUT,
                    ("fill", "#email", "mei@example.jp"),
                    ("click", "#estimate"),
                ),
            ),
        ),
    ),
)

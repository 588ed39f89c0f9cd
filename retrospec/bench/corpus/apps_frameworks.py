"""Two framework apps written for the corpus: a Vue 3 board (apps/board/, with immer and dayjs;
errors Vue catches reach app.config.errorHandler, which logs them with console.error(error)) and
a Preact notes app (apps/notes/, with date-fns and lodash-es; an error boundary logs what it
catches with console.error(error))."""

from __future__ import annotations

from retrospec.bench.corpus.model import App, Bug, Edit, ServerRule, Variant


def _v(label: str, *steps: tuple[str, ...]) -> Variant:
    return Variant(label, tuple(steps))


BOARD = App(
    name="board",
    framework="vue 3",
    origin="written for the corpus: apps/board/",
    packages=("vue", "immer", "dayjs"),
    copies=tuple(
        (f, f"apps/board/{f}") for f in ("index.html", "main.js", "store.js", "api.js", "views.js")
    ),
    port=(),
    server_rules=(ServerRule("POST", r"^/api/boards/[\w-]+/cards/\d+/archive$", 500),),
    clean_steps=(
        ("fill", "#filter", "Draft"),
        ("fill", "#filter", ""),
        ("click", "#card-101 .title"),
        ("click", "#card-101 .next"),
    ),
    bugs=(
        Bug(
            id="U1",
            app="board",
            classes=("framework-caught", "typo"),
            description="open(card) upper-cases card.assignee.name; unassigned cards have assignee "
            "null. Vue's errorHandler logs it",
            edits=(
                Edit(
                    "views.js",
                    'card.assignee ? card.assignee.name.toUpperCase() : "UNASSIGNED"',
                    "card.assignee.name.toUpperCase()",
                ),
            ),
            variants=(
                _v("card 102", ("click", "#card-102 .title")),
                _v("card 103", ("click", "#card-103 .title")),
                _v("after card 101", ("click", "#card-101 .title"), ("click", "#card-102 .title")),
            ),
            expect=("console",),
        ),
        Bug(
            id="U2",
            app="board",
            classes=("framework-caught",),
            description="Card render calls dayjs(...).fromNow(), a plugin method never loaded; "
            "render errors reach Vue's errorHandler",
            edits=(Edit("views.js", 'dayjs(c.due).format("D MMM")', "dayjs(c.due).fromNow()"),),
            variants=(
                _v("timeline", ("click", "#timeline")),
                _v("filtered timeline", ("fill", "#filter", "login"), ("click", "#timeline")),
                _v("after opening a card", ("click", "#card-201 .title"), ("click", "#timeline")),
            ),
            expect=("console",),
        ),
        Bug(
            id="U3",
            app="board",
            classes=("framework-caught", "user-data"),
            description="The filter watcher builds a RegExp from the raw text (escaping lost); the "
            "SyntaxError quotes the user's text and differs by what is wrong with it",
            edits=(
                Edit(
                    "views.js",
                    'matcher.value = text ? new RegExp(escaped, "i") : null;',
                    'matcher.value = text ? new RegExp(text, "i") : null;',
                ),
            ),
            variants=tuple(_v(t, ("fill", "#filter", t)) for t in ("fix (login", "[a-", "*urgent")),
            expect=("console",),
        ),
        Bug(
            id="U4",
            app="board",
            classes=("framework-caught", "vendor-thrown"),
            description="rename assigns to the selected card, a frozen immer snapshot, instead of "
            "going through renameCard (TypeError: read-only property)",
            edits=(
                Edit(
                    "views.js",
                    "if (selected.value) renameCard(selected.value.id, input.value);",
                    "if (selected.value) selected.value.title = input.value;",
                ),
            ),
            variants=tuple(
                _v(
                    f"card {c}",
                    ("click", f"#card-{c} .title"),
                    ("fill", "#rename", t),
                    ("click", "#rename-btn"),
                )
                for c, t in (
                    (101, "Release notes v2"),
                    (201, "Billing page (Stripe)"),
                    (301, "Welcome emails"),
                )
            ),
            expect=("console",),
        ),
        Bug(
            id="U5",
            app="board",
            classes=("framework-caught", "network", "user-data"),
            description="Archive awaits POST /api/boards/:board/cards/:card/archive (server 500) "
            "without catching; Vue catches the async handler's rejection",
            edits=(
                Edit(
                    "views.js",
                    "await archiveCard(board.value.id, props.card.id).catch(() => null);",
                    "await archiveCard(board.value.id, props.card.id);",
                ),
            ),
            variants=tuple(
                _v(f"card {c}", ("click", f"#card-{c} .archive")) for c in (101, 201, 301)
            ),
            expect=("console", "network"),
        ),
        Bug(
            id="U6",
            app="board",
            classes=("two-controls", "framework-caught", "vendor-thrown"),
            description="moveCard lost its bounds check; moving a card past the last column reads "
            "draft.columns[target].cards inside immer's produce. Reached from a card's → button and "
            "from the Move select",
            edits=(
                Edit(
                    "store.js",
                    "  if (target < 0 || target >= board.value.columns.length) return false;\n",
                    "",
                ),
            ),
            variants=(
                _v("→ button", ("click", "#card-301 .next")),
                _v("move select", ("select", "#move", "301")),
                _v("→ twice", ("click", "#card-201 .next"), ("click", "#card-201 .next")),
            ),
            expect=("console",),
        ),
    ),
)


NOTES = App(
    name="notes",
    framework="preact",
    origin="written for the corpus: apps/notes/",
    packages=("preact", "date-fns", "lodash-es"),
    copies=tuple(
        (f, f"apps/notes/{f}")
        for f in ("index.html", "main.js", "data.js", "sync.js", "components.js")
    ),
    port=(),
    server_rules=(ServerRule("PUT", r"^/api/notes/\d+$", 409, '{"editor": "marta"}'),),
    clean_steps=(("click", "#nb-recipes"), ("fill", "#share", "@marta"), ("click", "#share-btn")),
    bugs=(
        Bug(
            id="P1",
            app="notes",
            classes=("framework-caught",),
            description="Tags maps note.tags; imported notes have tags null. The notebook's error "
            "boundary logs it with console.error(error)",
            edits=(Edit("components.js", "(tags || []).map(", "tags.map("),),
            variants=tuple(_v(nb, ("click", f"#nb-{nb}")) for nb in ("work", "travel", "archive")),
            expect=("console",),
        ),
        Bug(
            id="P2",
            app="notes",
            classes=("user-data",),
            description="share throws for non-members, quoting the user name and notebook",
            edits=(
                Edit(
                    "components.js",
                    "    return `@${user} is not a member of ${notebook.name}`;",
                    '    throw new Error(`@${user} has no access to notebook "${notebook.name}"`);',
                ),
            ),
            variants=tuple(
                _v(n, ("fill", "#share", n), ("click", "#share-btn"))
                for n in ("@kenji", "@olu", "@ines.dias")
            ),
        ),
        Bug(
            id="P3",
            app="notes",
            classes=("network", "rejection", "user-data"),
            description="Save lost its rejection handler; PUT /api/notes/:id answers 409 and "
            "ConflictError (note id, title, editor) goes unhandled",
            edits=(
                Edit(
                    "components.js",
                    'saveNote(note).then(() => setStatus("saved"), () => setStatus("not saved"));',
                    'saveNote(note).then(() => setStatus("saved"));',
                ),
            ),
            variants=(
                _v("note 11", ("click", "#note-11 .save")),
                _v("note 12", ("click", "#note-12 .save")),
                _v("note 11 after 12", ("click", "#nb-recipes"), ("click", "#note-11 .save")),
            ),
            expect=("network", "unhandledrejection"),
        ),
    ),
)

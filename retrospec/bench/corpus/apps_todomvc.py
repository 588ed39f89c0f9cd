"""TodoMVC implementations from the npm package `todomvc` (examples/<name>), ported to bundling.

The ports only make the published global scripts work as bundled modules (shared globals through
`window`, AngularJS dependency annotations that survive minification, React 0.12 names mapped onto
React 18). Every bug is a separate, labelled edit on top of the port.
"""

from __future__ import annotations

import json

from retrospec.bench.corpus.model import App, Bug, Edit, ServerRule, Variant

EX = "node_modules/todomvc/examples"
SHARED_APP = "var app = app || {};"
WINDOW_APP = "var app = window.app = window.app || {};"


def _copies(example: str, files: list[str], extra: list[str]) -> tuple[tuple[str, str], ...]:
    out = [("index.html", f"{EX}/{example}/index.html")]
    out += [(f, f"{EX}/{example}/{f}") for f in files]
    out += [(f, f"apps/todomvc-{example}/{f}") for f in extra]
    return tuple(out)


# ---------------------------------------------------------------- vanillajs


def _vanilla_store(todos: list[dict[str, object]]) -> dict[str, str]:
    return {"todos-vanillajs": json.dumps({"todos": todos})}


_V_TWO = [
    {"title": "Renew car insurance", "completed": False, "id": 1},
    {"title": "Book dentist", "completed": False, "id": 2},
]

VANILLA = App(
    name="todomvc-vanillajs",
    framework="vanilla",
    origin="npm todomvc@0.1.1 examples/vanillajs",
    packages=("todomvc",),
    copies=_copies(
        "vanillajs",
        [
            "js/helpers.js",
            "js/store.js",
            "js/model.js",
            "js/template.js",
            "js/view.js",
            "js/controller.js",
            "js/app.js",
        ],
        ["main.js"],
    ),
    port=(),
    clean_steps=(
        ("fill", "#new-todo", "Water the plants"),
        ("press", "#new-todo", "Enter"),
        ("hash", "#/active"),
        ("hash", "#/completed"),
        ("hash", "#/"),
    ),
    bugs=(
        Bug(
            id="V1",
            app="todomvc-vanillajs",
            classes=("dynamic-key",),
            description="Latent bug of the published app: an unknown filter route makes "
            "Controller._filter call this['show' + route](), which is not a function",
            edits=(),
            variants=(
                Variant("route #/archived", (("hash", "#/archived"),)),
                Variant("route #/starred", (("hash", "#/starred"),)),
                Variant("route #/today", (("hash", "#/today"),)),
            ),
        ),
        Bug(
            id="V2",
            app="todomvc-vanillajs",
            classes=("typo", "two-controls"),
            description="View._elementComplete misspells listItem (ReferenceError); reached from "
            "an item's checkbox and from the toggle-all checkbox",
            edits=(
                Edit(
                    "js/view.js",
                    "qs('input', listItem).checked = completed;",
                    "qs('input', listitem).checked = completed;",
                ),
            ),
            variants=(
                Variant(
                    "item checkbox",
                    (("click", "#todo-list li:first-child .toggle"),),
                    _vanilla_store(_V_TWO),
                ),
                Variant("toggle-all", (("click", "#toggle-all"),), _vanilla_store(_V_TWO)),
                Variant(
                    "second item checkbox",
                    (("click", "#todo-list li:nth-child(2) .toggle"),),
                    _vanilla_store(_V_TWO),
                ),
            ),
        ),
        Bug(
            id="V3",
            app="todomvc-vanillajs",
            classes=("null-vs-undefined",),
            description="Controller.editItem trims the stored title; legacy records have a null "
            "title or none at all",
            edits=(
                Edit(
                    "js/controller.js",
                    "render('editItem', {id: id, title: data[0].title});",
                    "render('editItem', {id: id, title: data[0].title.trim()});",
                ),
            ),
            variants=(
                Variant(
                    "title null",
                    (("dblclick", "#todo-list li label"),),
                    _vanilla_store([{"title": None, "completed": False, "id": 7}]),
                ),
                Variant(
                    "title missing",
                    (("dblclick", "#todo-list li label"),),
                    _vanilla_store([{"completed": False, "id": 8}]),
                ),
                Variant(
                    "title null, 2nd record",
                    (("dblclick", "#todo-list li:nth-child(2) label"),),
                    _vanilla_store(
                        [
                            {"title": "Pay rent", "completed": False, "id": 1},
                            {"title": None, "completed": True, "id": 2},
                        ]
                    ),
                ),
            ),
        ),
        Bug(
            id="V4",
            app="todomvc-vanillajs",
            classes=("user-data",),
            description="Controller.addItem throws for long titles, quoting the title",
            edits=(
                Edit(
                    "js/controller.js",
                    "\t\tthat.model.create(title, function () {",
                    "\t\tif (title.length > 40) {\n"
                    "\t\t\tthrow new Error('Todo \"' + title + '\" is too long (' + title.length + "
                    "' characters, at most 40)');\n\t\t}\n\n"
                    "\t\tthat.model.create(title, function () {",
                ),
            ),
            variants=tuple(
                Variant(f"title {i}", (("fill", "#new-todo", t), ("press", "#new-todo", "Enter")))
                for i, t in enumerate(
                    [
                        "Call Margarethe about the quarterly tax return forms",
                        "Pick up the framed photos from the shop on Rue Oberkampf",
                        "Write the onboarding guide for the new warehouse staff in Lodz",
                    ]
                )
            ),
        ),
        Bug(
            id="V5",
            app="todomvc-vanillajs",
            classes=("typo",),
            description="Controller.removeCompletedItems calls data.foreach (not a function)",
            edits=(
                Edit(
                    "js/controller.js",
                    "that.model.read({ completed: true }, function (data) {\n\t\t\tdata.forEach(",
                    "that.model.read({ completed: true }, function (data) {\n\t\t\tdata.foreach(",
                ),
            ),
            variants=(
                Variant(
                    "one completed",
                    (("click", "#clear-completed"),),
                    _vanilla_store([{"title": "Return library books", "completed": True, "id": 3}]),
                ),
                Variant(
                    "two completed",
                    (("click", "#clear-completed"),),
                    _vanilla_store(
                        [
                            {"title": "Buy stamps", "completed": True, "id": 4},
                            {"title": "Mow lawn", "completed": True, "id": 5},
                        ]
                    ),
                ),
                Variant(
                    "mixed",
                    (("click", "#clear-completed"),),
                    _vanilla_store(
                        [
                            {"title": "Email landlord", "completed": False, "id": 6},
                            {"title": "Fix bike", "completed": True, "id": 9},
                        ]
                    ),
                ),
            ),
        ),
    ),
)


# ---------------------------------------------------------------- angularjs


def annotate_angular(text: str) -> str:
    """ngAnnotate by hand: wrap each injectable function in an array naming its dependencies,
    so that AngularJS's injector survives identifier minification (what ng-annotate did in the
    real builds of such apps)."""
    import re

    pattern = re.compile(
        r"(\.(?:config|controller|factory|directive)\((?:'[\w]+', )?|store: )"
        r"function( \w+)? ?\(([^)]*)\) \{"
    )
    out = text
    pos = 0
    while True:
        m = pattern.search(out, pos)
        if not m:
            return out
        args = [a.strip() for a in m.group(3).split(",") if a.strip()]
        head = m.group(1) + "[" + "".join(f"'{a}', " for a in args)
        fn_start = m.start() + len(m.group(1))
        # find the brace that closes the function
        depth = 0
        i = out.index("{", fn_start)
        while True:
            if out[i] == "{":
                depth += 1
            elif out[i] == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        out = out[: m.start()] + head + out[fn_start : i + 1] + "]" + out[i + 1 :]
        pos = m.start() + len(head)


def _ng_seed(*todos: dict[str, object]) -> tuple[dict[str, object], ...]:
    return tuple(todos)


_NG_TWO = _ng_seed(
    {"title": "Renew passport", "completed": False},
    {"title": "Order printer ink", "completed": False},
)
_NG_ADD = "addTodo"

ANGULAR = App(
    name="todomvc-angularjs",
    framework="angularjs",
    origin="npm todomvc@0.1.1 examples/angularjs",
    packages=("todomvc", "angular", "angular-route"),
    copies=_copies(
        "angularjs",
        [
            "js/app.js",
            "js/controllers/todoCtrl.js",
            "js/services/todoStorage.js",
            "js/directives/todoFocus.js",
            "js/directives/todoEscape.js",
        ],
        ["main.js"],
    ),
    port=(),
    transform=lambda path, text: (
        annotate_angular(text) if path.endswith(".js") and path != "main.js" else text
    ),
    server_rules=(ServerRule("DELETE", r"^/api/todos/\d+$", 500),),
    clean_steps=(
        ("fill", "#new-todo", "Water the plants"),
        ("press", "#new-todo", "Enter"),
        ("hash", "#/active"),
        ("hash", "#/completed"),
        ("hash", "#/"),
    ),
    bugs=(
        Bug(
            id="A1",
            app="todomvc-angularjs",
            classes=("dynamic-key", "framework-caught"),
            description="addTodo colours #tags from $scope.tagColors[tag], never loaded "
            "(undefined[tag]); $exceptionHandler logs it",
            edits=(
                Edit(
                    "js/controllers/todoCtrl.js",
                    "\t\t\t$scope.saving = true;",
                    "\t\t\tvar tag = /#(\\w+)/.exec(newTodo.title);\n"
                    "\t\t\tif (tag) {\n\t\t\t\tnewTodo.color = $scope.tagColors[tag[1]];\n\t\t\t}\n\n"
                    "\t\t\t$scope.saving = true;",
                ),
            ),
            variants=tuple(
                Variant(
                    f"tag {t}",
                    (("fill", "#new-todo", f"{title} #{t}"), ("press", "#new-todo", "Enter")),
                )
                for title, t in [
                    ("Pay rent", "home"),
                    ("Send invoice", "work"),
                    ("Buy batteries", "errands"),
                ]
            ),
            expect=("console",),
        ),
        Bug(
            id="A2",
            app="todomvc-angularjs",
            classes=("null-vs-undefined", "framework-caught"),
            description="editTodo reads todo.note.length; records have note null or no note",
            edits=(
                Edit(
                    "js/controllers/todoCtrl.js",
                    "\t\t\t$scope.originalTodo = angular.extend({}, todo);",
                    "\t\t\t$scope.originalTodo = angular.extend({}, todo);\n"
                    "\t\t\t$scope.noteLength = todo.note.length;",
                ),
            ),
            variants=(
                Variant(
                    "note null",
                    (("dblclick", "#todo-list li label"),),
                    api_seed=_ng_seed({"title": "Call plumber", "completed": False, "note": None}),
                ),
                Variant(
                    "note missing",
                    (("dblclick", "#todo-list li label"),),
                    api_seed=_ng_seed({"title": "Clean gutters", "completed": False}),
                ),
                Variant(
                    "note null, 2nd",
                    (("dblclick", "#todo-list li:nth-child(2) label"),),
                    api_seed=_ng_seed(
                        {"title": "Pay fine", "completed": False, "note": "asap"},
                        {"title": "Fix tap", "completed": False, "note": None},
                    ),
                ),
            ),
            expect=("console",),
        ),
        Bug(
            id="A3",
            app="todomvc-angularjs",
            classes=("typo", "two-controls", "framework-caught"),
            description="toggleCompleted counts into $scope.stats (never defined); reached from an "
            "item checkbox (ng-change) and from toggle-all (markAll)",
            edits=(
                Edit(
                    "js/controllers/todoCtrl.js",
                    "\t\t\tstore.put(todo, todos.indexOf(todo))",
                    "\t\t\t$scope.stats.toggled += 1;\n\t\t\tstore.put(todo, todos.indexOf(todo))",
                ),
            ),
            variants=(
                Variant(
                    "item checkbox",
                    (("click", "#todo-list li:first-child .toggle"),),
                    api_seed=_NG_TWO,
                ),
                Variant("toggle-all", (("click", "#toggle-all"),), api_seed=_NG_TWO),
                Variant(
                    "second checkbox",
                    (("click", "#todo-list li:nth-child(2) .toggle"),),
                    api_seed=_NG_TWO,
                ),
            ),
            expect=("console",),
        ),
        Bug(
            id="A4",
            app="todomvc-angularjs",
            classes=("user-data", "framework-caught"),
            description="addTodo rejects 'Name: …' todos for unknown assignees, quoting name and title",
            edits=(
                Edit(
                    "js/controllers/todoCtrl.js",
                    "\t\tvar todos = $scope.todos = store.todos;",
                    "\t\tvar todos = $scope.todos = store.todos;\n\t\tvar KNOWN_PEOPLE = ['Me'];",
                ),
                Edit(
                    "js/controllers/todoCtrl.js",
                    "\t\t\tif (!newTodo.title) {\n\t\t\t\treturn;\n\t\t\t}\n",
                    "\t\t\tif (!newTodo.title) {\n\t\t\t\treturn;\n\t\t\t}\n\n"
                    "\t\t\tvar assignee = /^(\\w+):/.exec(newTodo.title);\n"
                    "\t\t\tif (assignee && KNOWN_PEOPLE.indexOf(assignee[1]) < 0) {\n"
                    "\t\t\t\tthrow new Error('Unknown assignee \"' + assignee[1] + '\" in todo \"' + "
                    "newTodo.title + '\"');\n\t\t\t}\n",
                ),
            ),
            variants=tuple(
                Variant(
                    name,
                    (("fill", "#new-todo", f"{name}: {what}"), ("press", "#new-todo", "Enter")),
                )
                for name, what in [
                    ("Alice", "book flights"),
                    ("Bogdan", "renew the lease"),
                    ("Chiara", "call the bank"),
                ]
            ),
            expect=("console",),
        ),
        Bug(
            id="A5",
            app="todomvc-angularjs",
            classes=("network",),
            description="Server answers 500 to DELETE /api/todos/:id (the app's REST store)",
            edits=(),
            variants=tuple(
                Variant(
                    f"delete item {n}",
                    (
                        ("hover", f"#todo-list li:nth-child({n})"),
                        ("click", f"#todo-list li:nth-child({n}) .destroy"),
                    ),
                    api_seed=_ng_seed(
                        {"title": "Sort receipts", "completed": False},
                        {"title": "Back up laptop", "completed": True},
                        {"title": "Plan birthday", "completed": False},
                    ),
                )
                for n in (1, 2, 3)
            ),
            expect=("network",),
        ),
    ),
)


# ---------------------------------------------------------------- backbone


def _bb_store(todos: list[dict[str, object]]) -> dict[str, str]:
    items = {f"todos-backbone-{t['id']}": json.dumps(t) for t in todos}
    return {"todos-backbone": ",".join(str(t["id"]) for t in todos), **items}


_BB_TWO = _bb_store(
    [
        {"id": "a1", "title": "Buy paint", "completed": False, "order": 1},
        {"id": "a2", "title": "Sand the door", "completed": False, "order": 2},
    ]
)

_BB_FILES = [
    "js/models/todo.js",
    "js/collections/todos.js",
    "js/views/todo-view.js",
    "js/views/app-view.js",
    "js/routers/router.js",
    "js/app.js",
]

BACKBONE = App(
    name="todomvc-backbone",
    framework="backbone",
    origin="npm todomvc@0.1.1 examples/backbone",
    packages=("todomvc", "backbone", "underscore", "jquery", "backbone.localstorage"),
    copies=_copies("backbone", _BB_FILES, ["main.js", "globals.js"]),
    port=(
        *tuple(Edit(f, SHARED_APP, WINDOW_APP) for f in _BB_FILES),
        Edit(
            "js/app.js",
            "var ENTER_KEY = 13;\nvar ESC_KEY = 27;",
            "window.ENTER_KEY = 13;\nwindow.ESC_KEY = 27;",
        ),
    ),
    clean_steps=(
        ("fill", "#new-todo", "Water the plants"),
        ("press", "#new-todo", "Enter"),
        ("hash", "#/"),
    ),
    bugs=(
        Bug(
            id="B1",
            app="todomvc-backbone",
            classes=("typo", "two-controls"),
            description="TodoView.close reads this.$imput (typo); reached by Enter in the edit "
            "field and by leaving it (blur)",
            edits=(
                Edit(
                    "js/views/todo-view.js",
                    "var value = this.$input.val();",
                    "var value = this.$imput.val();",
                ),
            ),
            variants=(
                Variant(
                    "enter",
                    (
                        ("dblclick", "#todo-list li:first-child label"),
                        ("press", "#todo-list li.editing .edit", "Enter"),
                    ),
                    _BB_TWO,
                ),
                Variant(
                    "blur",
                    (("dblclick", "#todo-list li:first-child label"), ("click", "h1")),
                    _BB_TWO,
                ),
                Variant(
                    "enter, 2nd item",
                    (
                        ("dblclick", "#todo-list li:nth-child(2) label"),
                        ("press", "#todo-list li.editing .edit", "Enter"),
                    ),
                    _BB_TWO,
                ),
            ),
        ),
        Bug(
            id="B2",
            app="todomvc-backbone",
            classes=("dynamic-key",),
            description="The router titles the page from app.filterTitles[filter], never defined "
            "(undefined[filter])",
            edits=(
                Edit(
                    "js/routers/router.js",
                    "\t\t\tapp.TodoFilter = param || '';",
                    "\t\t\tapp.TodoFilter = param || '';\n\t\t\tif (app.TodoFilter) {\n"
                    "\t\t\t\tdocument.title = app.filterTitles[app.TodoFilter] + ' \u2022 TodoMVC';"
                    "\n\t\t\t}",
                ),
            ),
            variants=(
                Variant("active", (("hash", "#/active"),), _BB_TWO),
                Variant("completed", (("hash", "#/completed"),), _BB_TWO),
                Variant("active via link", (("click", "#filters a[href='#/active']"),), _BB_TWO),
            ),
        ),
        Bug(
            id="B3",
            app="todomvc-backbone",
            classes=("user-data",),
            description="The router throws for unknown filters, quoting the route fragment",
            edits=(
                Edit(
                    "js/routers/router.js",
                    "\t\tsetFilter: function (param) {",
                    "\t\tsetFilter: function (param) {\n"
                    "\t\t\tif (param && !/^(active|completed)$/.test(param)) {\n"
                    "\t\t\t\tthrow new Error('No filter for route \"#/' + param + '\"');\n\t\t\t}",
                ),
            ),
            variants=(
                Variant("archived", (("hash", "#/archived"),)),
                Variant("tag", (("hash", "#/tag/errands"),)),
                Variant("user", (("hash", "#/user/amelie.dupont"),)),
            ),
        ),
        Bug(
            id="B4",
            app="todomvc-backbone",
            classes=("null-vs-undefined",),
            description="TodoView.toggleCompleted reads the todo's due date; records have due null "
            "or no due",
            edits=(
                Edit(
                    "js/views/todo-view.js",
                    "\t\t\tthis.model.toggle();",
                    "\t\t\tthis.model.toggle();\n"
                    "\t\t\tapp.lastDue = this.model.get('due').slice(0, 10);",
                ),
            ),
            variants=(
                Variant(
                    "due null",
                    (("click", "#todo-list li .toggle"),),
                    _bb_store(
                        [
                            {
                                "id": "n1",
                                "title": "File taxes",
                                "completed": False,
                                "order": 1,
                                "due": None,
                            }
                        ]
                    ),
                ),
                Variant(
                    "due missing",
                    (("click", "#todo-list li .toggle"),),
                    _bb_store([{"id": "m1", "title": "Feed cat", "completed": False, "order": 1}]),
                ),
                Variant(
                    "due null, completed",
                    (("click", "#todo-list li .toggle"),),
                    _bb_store(
                        [
                            {
                                "id": "n2",
                                "title": "Wash car",
                                "completed": True,
                                "order": 1,
                                "due": None,
                            }
                        ]
                    ),
                ),
            ),
        ),
        Bug(
            id="B5",
            app="todomvc-backbone",
            classes=("user-data",),
            description="createOnEnter rejects issue keys of unknown projects, quoting project and key",
            edits=(
                Edit(
                    "js/views/app-view.js",
                    "\t\t\tif (e.which === ENTER_KEY && this.$input.val().trim()) {",
                    "\t\t\tif (e.which === ENTER_KEY && this.$input.val().trim()) {\n"
                    "\t\t\t\tvar key = /\\b([A-Z]{2,5})-(\\d{1,5})\\b/.exec(this.$input.val());\n"
                    "\t\t\t\tif (key && !(app.projects || {WEB: true})[key[1]]) {\n"
                    "\t\t\t\t\tthrow new Error('Unknown project ' + key[1] + ' in issue key ' + key[0]);\n"
                    "\t\t\t\t}",
                ),
            ),
            variants=tuple(
                Variant(t, (("fill", "#new-todo", t), ("press", "#new-todo", "Enter")))
                for t in ["Fix OPS-1182 alert", "Review DATA-77 export", "Ship MOB-4410 build"]
            ),
        ),
    ),
)


# ---------------------------------------------------------------- react


def _react_store(todos: list[dict[str, object]]) -> dict[str, str]:
    return {"react-todos": json.dumps(todos)}


_R_FILES = ["js/utils.js", "js/todoModel.js", "js/todoItem.jsx", "js/footer.jsx", "js/app.jsx"]
_R_DONE = _react_store(
    [
        {"id": "5f0c", "title": "Buy bread", "completed": True},
        {"id": "77ab", "title": "Return parcel", "completed": True},
    ]
)

REACT = App(
    name="todomvc-react",
    framework="react",
    origin="npm todomvc@0.1.1 examples/react",
    packages=("todomvc", "react", "react-dom", "create-react-class", "director"),
    copies=_copies("react", _R_FILES, ["main.js", "react-shim.js"]),
    port=(
        *tuple(Edit(f, SHARED_APP, WINDOW_APP) for f in _R_FILES),
        Edit("js/app.jsx", ".getDOMNode()", "", count=2),
        Edit("js/todoItem.jsx", ".getDOMNode()", ""),
        Edit(
            "js/app.jsx",
            "React.render(\n\t\t\t<TodoApp model={model}/>,",
            "ReactDOM.render(\n\t\t\t<ErrorBoundary><TodoApp model={model}/></ErrorBoundary>,",
        ),
    ),
    server_rules=(ServerRule("PUT", r"^/api/todos/[\w-]+$", 503),),
    clean_steps=(
        ("fill", "#new-todo", "Water the plants"),
        ("press", "#new-todo", "Enter"),
        ("click", "#todo-list li .toggle"),
        ("hash", "#/active"),
        ("hash", "#/completed"),
        ("hash", "#/"),
    ),
    bugs=(
        Bug(
            id="R1",
            app="todomvc-react",
            classes=("framework-caught",),
            description="TodoItem renders todo.due.toLocaleDateString(); stored dues are strings. "
            "The error boundary logs it with console.error(error)",
            edits=(
                Edit(
                    "js/todoItem.jsx",
                    "\t\t\t\t\t\t\t{this.props.todo.title}\n",
                    "\t\t\t\t\t\t\t{this.props.todo.title}\n"
                    "\t\t\t\t\t\t\t{this.props.todo.due ? ' (due ' + "
                    "this.props.todo.due.toLocaleDateString() + ')' : ''}\n",
                ),
            ),
            variants=(
                Variant(
                    "one due",
                    (),
                    _react_store(
                        [{"id": "c1", "title": "Dentist", "completed": False, "due": "2024-05-02"}]
                    ),
                ),
                Variant(
                    "two dues",
                    (),
                    _react_store(
                        [
                            {"id": "c2", "title": "Gym", "completed": False},
                            {
                                "id": "c3",
                                "title": "Tax return",
                                "completed": False,
                                "due": "2024-04-30T12:00:00Z",
                            },
                        ]
                    ),
                ),
                Variant(
                    "completed due",
                    (),
                    _react_store(
                        [{"id": "c4", "title": "Visa", "completed": True, "due": "2025-01-15"}]
                    ),
                ),
            ),
            expect=("console",),
        ),
        Bug(
            id="R2",
            app="todomvc-react",
            classes=("null-vs-undefined",),
            description="TodoItem.handleEdit trims the title; records have title null or none",
            edits=(
                Edit(
                    "js/todoItem.jsx",
                    "this.setState({editText: this.props.todo.title});\n\t\t},\n\n"
                    "\t\thandleKeyDown",
                    "this.setState({editText: this.props.todo.title.trim()});\n\t\t},\n\n"
                    "\t\thandleKeyDown",
                ),
            ),
            variants=(
                Variant(
                    "title null",
                    (("dblclick", "#todo-list li label"),),
                    _react_store([{"id": "d1", "title": None, "completed": False}]),
                ),
                Variant(
                    "title missing",
                    (("dblclick", "#todo-list li label"),),
                    _react_store([{"id": "d2", "completed": False}]),
                ),
                Variant(
                    "title null, 2nd",
                    (("dblclick", "#todo-list li:nth-child(2) label"),),
                    _react_store(
                        [
                            {"id": "d3", "title": "Ok", "completed": False},
                            {"id": "d4", "title": None, "completed": False},
                        ]
                    ),
                ),
            ),
        ),
        Bug(
            id="R3",
            app="todomvc-react",
            classes=("two-controls",),
            description="Utils.markCompleted keeps todo.completedOn.slice(0, 10) when un-completing; "
            "old records have no completedOn. Reached from an item checkbox and from toggle-all",
            edits=(
                Edit(
                    "js/utils.js",
                    "\t\tpluralize: function (count, word) {",
                    "\t\tmarkCompleted: function (todo, completed) {\n"
                    "\t\t\treturn this.extend({}, todo, {\n\t\t\t\tcompleted: completed,\n"
                    "\t\t\t\tcompletedOn: completed ? new Date().toISOString() : null,\n"
                    "\t\t\t\twasCompletedOn: completed ? null : todo.completedOn.slice(0, 10)\n"
                    "\t\t\t});\n\t\t},\n\n\t\tpluralize: function (count, word) {",
                ),
                Edit(
                    "js/todoModel.js",
                    "return Utils.extend({}, todo, {completed: checked});",
                    "return Utils.markCompleted(todo, checked);",
                ),
                Edit(
                    "js/todoModel.js",
                    "Utils.extend({}, todo, {completed: !todo.completed});",
                    "Utils.markCompleted(todo, !todo.completed);",
                ),
            ),
            variants=(
                Variant(
                    "item checkbox", (("click", "#todo-list li:first-child .toggle"),), _R_DONE
                ),
                Variant("toggle-all", (("click", "#toggle-all"),), _R_DONE),
                Variant(
                    "second checkbox", (("click", "#todo-list li:nth-child(2) .toggle"),), _R_DONE
                ),
            ),
        ),
        Bug(
            id="R4",
            app="todomvc-react",
            classes=("network", "rejection", "user-data"),
            description="Saving an edit syncs PUT /api/todos/:id; the server answers 503 and the "
            "promise rejects with the title in its message, unhandled",
            edits=(
                Edit(
                    "js/todoModel.js",
                    "\tapp.TodoModel.prototype.subscribe",
                    "\tapp.sync = function (todo, title) {\n"
                    "\t\treturn fetch('/api/todos/' + todo.id, {method: 'PUT', "
                    "body: JSON.stringify({title: title})})\n"
                    "\t\t\t.then(function (res) {\n\t\t\t\tif (!res.ok) {\n"
                    "\t\t\t\t\tthrow new Error('Could not sync \"' + title + '\" (HTTP ' + "
                    "res.status + ')');\n\t\t\t\t}\n\t\t\t});\n\t};\n\n"
                    "\tapp.TodoModel.prototype.subscribe",
                ),
                Edit(
                    "js/app.jsx",
                    "\t\t\tthis.props.model.save(todoToSave, text);",
                    "\t\t\tthis.props.model.save(todoToSave, text);\n\t\t\tapp.sync(todoToSave, text);",
                ),
            ),
            variants=tuple(
                Variant(
                    t,
                    (
                        ("dblclick", "#todo-list li label"),
                        ("fill", "#todo-list li.editing .edit", t),
                        ("press", "#todo-list li.editing .edit", "Enter"),
                    ),
                    _react_store([{"id": i, "title": "Draft", "completed": False}]),
                )
                for i, t in [
                    ("e1a2", "Call Ines back"),
                    ("f9c0", "Order 40 chairs"),
                    ("0b7d", "Reply to Mr. Okafor"),
                ]
            ),
            expect=("network", "unhandledrejection"),
        ),
        Bug(
            id="R5",
            app="todomvc-react",
            classes=("typo",),
            description="TodoModel.clearCompleted filters this.todo (typo)",
            edits=(
                Edit(
                    "js/todoModel.js",
                    "\t\tthis.todos = this.todos.filter(function (todo) {\n\t\t\treturn !todo.completed;",
                    "\t\tthis.todos = this.todo.filter(function (todo) {\n\t\t\treturn !todo.completed;",
                ),
            ),
            variants=(
                Variant("two done", (("click", "#clear-completed"),), _R_DONE),
                Variant(
                    "one done",
                    (("click", "#clear-completed"),),
                    _react_store(
                        [
                            {"id": "g1", "title": "Laundry", "completed": True},
                            {"id": "g2", "title": "Dishes", "completed": False},
                        ]
                    ),
                ),
                Variant(
                    "after toggle",
                    (
                        ("click", "#todo-list li:nth-child(2) .toggle"),
                        ("click", "#clear-completed"),
                    ),
                    _react_store(
                        [
                            {"id": "h1", "title": "Iron shirts", "completed": True},
                            {"id": "h2", "title": "Hoover", "completed": False},
                        ]
                    ),
                ),
            ),
        ),
    ),
)

APPS = (VANILLA, ANGULAR, BACKBONE, REACT)

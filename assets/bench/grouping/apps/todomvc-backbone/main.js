// Entry for bundling: vendor globals, then the published app's scripts in index.html order.
import "./globals.js";
import "./js/models/todo.js";
import "./js/collections/todos.js";
import "./js/views/todo-view.js";
import "./js/views/app-view.js";
import "./js/routers/router.js";
import "./js/app.js";

// Entry for bundling: the published app's scripts, in the order its index.html loaded them.
import "./js/helpers.js";
import "./js/store.js";
import "./js/model.js";
import "./js/template.js";
import "./js/view.js";
import "./js/controller.js";
import "./js/app.js";

// Entry for bundling: AngularJS and ngRoute from npm, then the published app's scripts in order.
import "angular";
import "angular-route";
import "./js/app.js";
import "./js/controllers/todoCtrl.js";
import "./js/services/todoStorage.js";
import "./js/directives/todoFocus.js";
import "./js/directives/todoEscape.js";

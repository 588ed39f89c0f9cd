// The published app expects jQuery, Underscore and Backbone (with Backbone.LocalStorage) as globals.
import jQuery from "jquery";
import _ from "underscore";
import Backbone from "backbone";
import "backbone.localstorage";

window.$ = window.jQuery = jQuery;
window._ = _;
window.Backbone = Backbone;

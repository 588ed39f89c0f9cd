// Notes: a Preact app; each notebook renders inside an error boundary.
import { h, render } from "preact";
import { App } from "./components.js";

render(h(App, {}), document.getElementById("root"));

// Team board: a Vue 3 app. Errors Vue catches (handlers, render, watchers, async handlers) go to
// app.config.errorHandler, which logs them the way most apps do.
import { createApp } from "vue";
import { Board } from "./views.js";

const app = createApp(Board);
app.config.errorHandler = (error) => {
  console.error(error);
};
app.mount("#app");

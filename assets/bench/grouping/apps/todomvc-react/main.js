// Entry for bundling: the React shim, then the published app's scripts (JSX compiled to JS).
import "./react-shim.js";
import "./js/utils.js";
import "./js/todoModel.js";
import "./js/todoItem.js";
import "./js/footer.js";
import "./js/app.js";

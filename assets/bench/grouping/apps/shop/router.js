// A tiny path router over history.pushState.
const routes = [];

export function route(pattern, handler) {
  routes.push({ regex: new RegExp("^" + pattern.replace(/:\w+/g, "([^/]+)") + "$"), handler });
}

export function navigate(path, { push = true } = {}) {
  const match = routes.map((r) => ({ r, m: r.regex.exec(path) })).find((x) => x.m);
  if (!match) {
    document.getElementById("view").textContent = "Page not found";
    return false;
  }
  if (push) history.pushState({}, "", path);
  match.r.handler(...match.m.slice(1));
  return true;
}

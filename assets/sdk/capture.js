// RetroSpec browser SDK, part 3 of 4: hooks that turn page failures and navigations into calls
// on `sink` (main.js). Wrapped globals (fetch, XHR, console.error, history) are never unwrapped,
// because code that wrapped them after us would lose its wrapper; they go inert on stop().

function errorFailure(kind, err, fallback) {
  if (isErrorLike(err)) {
    return {
      kind,
      type: String(err.name || "Error"),
      message: cap(err.message, MAX_MESSAGE),
      stack: typeof err.stack === "string" ? cap(err.stack, MAX_STACK) : undefined,
    };
  }
  return { kind, message: cap(fallback, MAX_MESSAGE) };
}

// Debug IDs that bundler plugins and `sentry-cli sourcemaps inject` register at runtime:
// globalThis._sentryDebugIds (and Turbopack's _debugIds) maps an Error().stack taken at the
// script's top level to its ID. The last URL in that stack is the script's own. Re-read when
// scripts were added (the key count changed).
const STACK_URL = /(?:https?|file):\/\/[^\s()"']+?:\d+:\d+/g;
let debugIdMap = null;
let debugIdKeys = -1;

function scriptDebugIds() {
  const g = typeof globalThis !== "undefined" ? globalThis : window;
  const registries = [g._sentryDebugIds, g._debugIds].filter((r) => r && typeof r === "object");
  let count = 0;
  registries.forEach((r) => (count += Object.keys(r).length));
  if (count === debugIdKeys) return debugIdMap;
  const map = {};
  registries.forEach((r) => Object.keys(r).forEach((key) => {
    const urls = String(key).match(STACK_URL);
    if (urls && typeof r[key] === "string") map[urls[urls.length - 1].replace(/:\d+:\d+$/, "")] = r[key];
  }));
  debugIdMap = count ? map : null;
  debugIdKeys = count;
  return debugIdMap;
}

// {script URL: debug ID} for the scripts in one stack (source maps then match by ID).
function debugIdsFor(stack) {
  const known = typeof stack === "string" && scriptDebugIds();
  if (!known) return undefined;
  let out;
  (stack.match(STACK_URL) || []).forEach((loc) => {
    const url = loc.replace(/:\d+:\d+$/, "");
    if (known[url]) (out = out || {})[cap(url, 4096)] = cap(known[url], 64);
  });
  return out;
}

// One Error object is one failure, even when a framework logs it, a hook passes it to
// captureException and it also goes uncaught. True when `err` was reported already.
const reportedErrors = typeof WeakSet === "function" ? new WeakSet() : null;
function seenBefore(err) {
  if (!reportedErrors || !err || typeof err !== "object") return false;
  if (reportedErrors.has(err)) return true;
  reportedErrors.add(err);
  return false;
}

// Where console.error was called from: a fresh stack minus its header and our wrapper's frame,
// so two calls from one code path group together.
function callerStack(trace) {
  const lines = String(trace.stack || "").split("\n");
  if (lines[0] === "Error") lines.shift();
  return lines.slice(1).join("\n") || undefined;
}

function installCapture(sink) {
  const live = () => sink.active() && !sink.busy();
  const cleanups = [];
  const on = (type, fn) => {
    window.addEventListener(type, fn);
    cleanups.push(() => window.removeEventListener(type, fn));
  };

  on("error", (ev) => {
    // Failed <img>/<script> loads do not bubble to window; only script errors arrive here.
    if (!live() || !(ev instanceof ErrorEvent)) return;
    sink.guard(() => {
      if (seenBefore(ev.error)) return;
      const f = errorFailure("error", ev.error, ev.error === undefined || ev.error === null
        ? ev.message : "Uncaught " + describe(ev.error));
      if (ev.filename) f.filename = sink.clean(ev.filename);
      if (ev.lineno) f.lineno = ev.lineno;
      if (ev.colno) f.colno = ev.colno;
      sink.report(f);
    });
  });

  on("unhandledrejection", (ev) => {
    if (!live()) return;
    sink.guard(() => {
      const reason = ev.reason;
      if (seenBefore(reason)) return;
      const f = errorFailure("unhandledrejection", reason,
        "Non-Error promise rejection: " + describe(reason));
      if (!isErrorLike(reason)) {
        f.type = "UnhandledRejection";
        f.context = { reason: plain(reason) };
      }
      sink.report(f);
    });
  });

  if (sink.options.captureConsole && typeof console !== "undefined") {
    const original = console.error;
    console.error = function () {
      if (live()) {
        const args = Array.prototype.slice.call(arguments);
        const trace = new Error();
        sink.guard(() => {
          const err = args.find(isErrorLike);
          if (err) {
            // Frameworks log the errors they catch (React error boundaries, Vue's errorHandler,
            // AngularJS's $exceptionHandler): that is the error itself, of its real type and
            // with its real stack, as Sentry's CaptureConsole reports it.
            if (seenBefore(err)) return;
            const f = errorFailure("error", err);
            const rest = args.filter((a) => a !== err).map(describe).join(" ");
            if (rest) f.context = { console: cap(rest, MAX_MESSAGE) };
            sink.report(f);
            return;
          }
          const f = { kind: "console", stack: callerStack(trace) };
          f.message = cap(args.map(describe).join(" "), MAX_MESSAGE);
          sink.report(f);
        });
      }
      return original.apply(this, arguments);
    };
  }

  if (sink.options.captureNetwork) hookNetwork(sink, live);

  for (const name of ["pushState", "replaceState"]) {
    const original = history[name];
    if (typeof original !== "function") continue;
    history[name] = function () {
      const result = original.apply(this, arguments);
      if (live()) sink.guard(sink.navigated);
      return result;
    };
  }
  const navigated = () => live() && sink.guard(sink.navigated);
  on("popstate", navigated);
  on("hashchange", navigated);

  return () => cleanups.forEach((fn) => fn());
}

function networkFailure(sink, api, method, url, start, status, error) {
  const requestUrl = sink.clean(absoluteUrl(url));
  const f = {
    kind: "network",
    type: status ? "HTTPError" : "NetworkError",
    method,
    request_url: requestUrl,
    status,
    duration_ms: Math.max(0, now() - start),
    message: method + " " + requestUrl + (status ? " \u2192 " + status : " failed: " + error),
    context: { api },
  };
  sink.report(f);
}

function hookNetwork(sink, live) {
  const watch = (url) => live() && !sink.isOwn(url);

  if (typeof window.fetch === "function") {
    const original = window.fetch;
    window.fetch = function (input, init) {
      const promise = original.apply(this, arguments);
      let method, url, start;
      try {
        url = typeof input === "string" ? input : input && (input.href || input.url);
        if (!watch(url)) return promise;
        method = String((init && init.method) || (input && input.method) || "GET").toUpperCase();
        start = now();
      } catch (e) {
        return promise;
      }
      // A side chain: the page still sees the very same promise, settled the same way.
      promise.then(
        (res) => {
          // Opaque (no-cors) responses hide their status; they are not failures we can judge.
          if (res.type === "opaque" || !sink.failsOn(res.status)) return;
          sink.guard(() => networkFailure(sink, "fetch", method, url, start, res.status));
        },
        (err) => {
          if (err && err.name === "AbortError") return; // the page cancelled it on purpose
          if (!sink.failsOn(0)) return;
          sink.guard(() => networkFailure(sink, "fetch", method, url, start, 0, describe(err)));
        },
      ).catch(() => {});
      return promise;
    };
  }

  if (typeof XMLHttpRequest === "function") {
    const proto = XMLHttpRequest.prototype;
    const requests = new WeakMap();
    const open = proto.open;
    const send = proto.send;
    proto.open = function (method, url) {
      try {
        requests.set(this, { method: String(method).toUpperCase(), url: String(url) });
      } catch (e) {}
      return open.apply(this, arguments);
    };
    proto.send = function () {
      const info = requests.get(this);
      if (info && watch(info.url)) {
        try {
          const xhr = this;
          info.start = now();
          info.outcome = "";
          const mark = (ev) => (info.outcome = ev.type);
          xhr.addEventListener("abort", mark);
          xhr.addEventListener("error", mark);
          xhr.addEventListener("timeout", mark);
          xhr.addEventListener("loadend", () => {
            if (info.outcome === "abort") return;
            const status = info.outcome ? 0 : xhr.status;
            if (!sink.failsOn(status)) return;
            sink.guard(() =>
              networkFailure(sink, "xhr", info.method, info.url, info.start, status,
                info.outcome === "timeout" ? "timeout" : "network error"));
          });
        } catch (e) {}
      }
      return send.apply(this, arguments);
    };
  }
}

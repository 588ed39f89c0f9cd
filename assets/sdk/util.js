// RetroSpec browser SDK, part 1 of 4: small helpers.
// retrospec/sdk.py joins util.js, transport.js, capture.js and main.js inside one closure (a
// classic script and an ES module) after the vendored recorder; the wrapper defines `RRWEB`
// (rrweb's `record` namespace) and `SDK_VERSION`. Nothing in here may throw into the host page.

const SESSION_KEY = "retrospec.session";
const ANON_KEY = "retrospec.anonymous_id";
const MAX_STRING = 1000;
const MAX_MESSAGE = 4000;
const MAX_STACK = 16000;

const now = () => Date.now();

function uuid() {
  let b;
  try {
    // randomUUID needs a secure context; getRandomValues also works on plain http pages.
    if (crypto.randomUUID) return crypto.randomUUID();
    b = crypto.getRandomValues(new Uint8Array(16));
  } catch (e) {
    b = [];
    for (let i = 0; i < 16; i++) b.push(Math.floor(Math.random() * 256));
  }
  b[6] = (b[6] & 15) | 64;
  b[8] = (b[8] & 63) | 128;
  let h = "";
  for (let i = 0; i < 16; i++) h += (b[i] + 256).toString(16).slice(1);
  return [h.slice(0, 8), h.slice(8, 12), h.slice(12, 16), h.slice(16, 20), h.slice(20)].join("-");
}

// Storage throws in sandboxed iframes and when cookies are blocked: then we live in memory.
function readStore(kind, key) {
  try {
    const raw = window[kind].getItem(key);
    return raw ? JSON.parse(raw) : null;
  } catch (e) {
    return null;
  }
}

function writeStore(kind, key, value) {
  try {
    window[kind].setItem(key, JSON.stringify(value));
  } catch (e) {}
}

function cap(text, limit) {
  text = String(text);
  return text.length > limit ? text.slice(0, limit - 1) + "\u2026" : text;
}

// URL without its query string (bar the parameters named in `keep`); a fragment survives only
// when it looks like a route ("#/cart"), never when it carries parameters ("#access_token=...").
function stripQuery(url, keep) {
  const at = url.indexOf("#");
  let hash = at >= 0 ? url.slice(at).split("?")[0] : "";
  if (/[=&]/.test(hash)) hash = "";
  const base = at >= 0 ? url.slice(0, at) : url;
  const q = base.indexOf("?");
  let out = q >= 0 ? base.slice(0, q) : base;
  if (q >= 0 && keep && keep.length) {
    const kept = base.slice(q + 1).split("&").filter((p) => keep.indexOf(decodeParam(p.split("=")[0])) >= 0);
    if (kept.length) out += "?" + kept.join("&");
  }
  return out + hash;
}

function decodeParam(name) {
  try {
    return decodeURIComponent(name.replace(/\+/g, " "));
  } catch (e) {
    return name;
  }
}

// Every URL inside free text (stack frames, messages) without its query string; a frame's
// ":line:col" stays after the path.
const URL_IN_TEXT = /\b[a-zA-Z][a-zA-Z0-9+.-]{1,15}:\/\/[^\s"'<>()[\]{}\x60]+/g;
function stripTextUrls(text, keep) {
  if (typeof text !== "string" || text.indexOf("://") < 0) return text;
  return text.replace(URL_IN_TEXT, (token) => {
    const m = /(?::\d+){1,2}$/.exec(token);
    const tail = m ? m[0] : "";
    return stripQuery(tail ? token.slice(0, -tail.length) : token, keep) + tail;
  });
}

// Recorded DOM attributes (and rrweb's own URL fields) that carry URLs.
const URL_KEYS = { href: 1, src: 1, action: 1, formaction: 1, poster: 1, url: 1, request_url: 1 };

// A JSON.stringify replacer that strips query strings from the URLs a recorded event carries.
function urlReplacer(keep) {
  return function (key, value) {
    if (typeof value !== "string" || (value.indexOf("?") < 0 && value.indexOf("#") < 0)) return value;
    if (key === "srcset") {
      return value.split(",").map((c) => {
        const bits = c.trim().split(/\s+/);
        bits[0] = stripQuery(bits[0], keep);
        return bits.join(" ");
      }).join(", ");
    }
    return URL_KEYS[key] === 1 ? stripQuery(value, keep) : value;
  };
}

function absoluteUrl(url) {
  try {
    return new URL(String(url), location.href).href;
  } catch (e) {
    return String(url);
  }
}

function isErrorLike(value) {
  return !!value && typeof value === "object" && typeof value.message === "string" &&
    ("stack" in value || "name" in value);
}

// JSON-safe copy of any value: cycles, throwing getters, DOM nodes, functions, bigints and huge
// structures all become short markers; `budget` bounds the total work per call.
function toPlain(value, depth, seen, budget) {
  if (--budget.n < 0) return "[\u2026]";
  const type = typeof value;
  if (value === null || type === "boolean") return value;
  if (type === "number") return isFinite(value) ? value : String(value);
  if (type === "string") return cap(value, MAX_STRING);
  if (type === "undefined") return "[undefined]";
  if (type === "bigint") return value + "n";
  if (type === "symbol" || type === "function") return "[" + type + "]";
  if (isErrorLike(value)) return { name: String(value.name), message: cap(value.message, MAX_STRING) };
  if (typeof Node !== "undefined" && value instanceof Node) {
    return "<" + String(value.nodeName).toLowerCase() + (value.id ? "#" + value.id : "") + ">";
  }
  if (seen.indexOf(value) >= 0) return "[Circular]";
  if (depth >= 4) return Array.isArray(value) ? "[Array]" : "[Object]";
  seen.push(value);
  const isArray = Array.isArray(value);
  const keys = isArray ? null : Object.keys(value);
  const count = isArray ? value.length : keys.length;
  const out = isArray ? [] : {};
  for (let i = 0; i < count && i < 50; i++) {
    const key = isArray ? i : keys[i];
    let item;
    try {
      item = value[key];
    } catch (e) {
      item = "[getter threw]";
    }
    out[key] = toPlain(item, depth + 1, seen, budget);
  }
  if (count > 50) out[isArray ? 50 : "\u2026"] = "[" + (count - 50) + " more]";
  seen.pop();
  return out;
}

function plain(value) {
  try {
    return toPlain(value, 0, [], { n: 500 });
  } catch (e) {
    return "[unserializable]";
  }
}

// One console argument as text, the way a developer reads it in the devtools console.
function describe(value) {
  if (typeof value === "string") return cap(value, MAX_STRING);
  if (isErrorLike(value)) return String(value.name || "Error") + ": " + value.message;
  try {
    return cap(JSON.stringify(plain(value)), MAX_STRING);
  } catch (e) {
    return "[unserializable]";
  }
}

// RetroSpec browser SDK, part 4 of 4: initRetrospec, the session, the recorder and batching.

const DEFAULTS = {
  release: undefined,
  environment: undefined,
  user: undefined,
  sessionSampleRate: 1,
  errorSampleRate: 1,
  flushIntervalMs: 5000,
  maskAllInputs: true,
  maskTextSelector: null,
  blockSelector: null,
  captureConsole: true,
  captureNetwork: true,
  networkFailureStatus: null, // default: 5xx and network errors
  ignoreErrors: [],
  beforeSend: null,
  inactivityTimeoutMs: 30 * 60 * 1000,
  stripQueryStrings: true,
  keepQueryParams: [], // query parameters kept in captured URLs (the server must keep them too)
  bufferMs: 60000,
  // A full snapshot at the first activity after this long, so a replay can start (and seek) from
  // a nearby checkpoint instead of the session's start. 0 turns it off.
  checkoutMs: 120000,
  maxQueueBytes: 5 * 1024 * 1024, // unsent data kept while the server is away
};
const META = 4; // rrweb event types
const FULL_SNAPSHOT = 2;
const MAX_BATCH_BYTES = 256 * 1024;
const MAX_BATCH_EVENTS = 1000;
const MAX_BUFFER_BYTES = 8 * 1024 * 1024;
const MAX_PENDING_FAILURES = 100;
const FAILURE_FLUSH_MS = 500; // failures go out soon, gathering a burst into one batch
const BEACON_PIECE = 56 * 1024;
const KINDS = ["error", "unhandledrejection", "network", "console", "custom"];
const EDITABLE = '[contenteditable]:not([contenteditable="false"])';
// One client per page, even when both the script and the module are loaded.
const GLOBAL = typeof Symbol === "function" ? Symbol.for("retrospec.client") : "__retrospec";

const NOOP = {
  flush: () => Promise.resolve(),
  identify() {},
  captureException() {},
  stop() {},
};

function statusMatcher(rule) {
  if (typeof rule === "function") return rule;
  if (typeof rule === "number") return (s) => s === 0 || s >= rule;
  if (Array.isArray(rule)) return (s) => s === 0 || rule.indexOf(s) >= 0;
  return (s) => s === 0 || s >= 500;
}

function pickUser(user) {
  if (!user || typeof user !== "object") return null;
  const out = {};
  for (const key of ["id", "email", "name"]) {
    if (user[key] !== undefined && user[key] !== null) out[key] = cap(user[key], 256);
  }
  return out;
}

const str = (value, limit) => (value === undefined || value === null ? undefined : cap(value, limit));
const int = (value) => (typeof value === "number" && isFinite(value) ? Math.round(value) : undefined);

// Whatever beforeSend returned, make it something the server accepts: one bad field would
// otherwise get the whole batch, replay data included, refused.
function normalizeFailure(f, url) {
  const out = {
    kind: KINDS.indexOf(f.kind) >= 0 ? f.kind : "custom",
    ts: int(f.ts) || now(),
    type: str(f.type, 256),
    message: str(f.message, MAX_MESSAGE),
    stack: str(f.stack, MAX_STACK),
    url: str(f.url || url, 4096),
    filename: str(f.filename, 4096),
    lineno: int(f.lineno),
    colno: int(f.colno),
    method: str(f.method, 16),
    request_url: str(f.request_url, 4096),
    status: int(f.status) >= 0 && int(f.status) <= 999 ? int(f.status) : undefined,
    duration_ms: typeof f.duration_ms === "number" && f.duration_ms >= 0 ? f.duration_ms : undefined,
  };
  if (Array.isArray(f.fingerprint)) out.fingerprint = f.fingerprint.slice(0, 20).map((p) => cap(p, 256));
  if (f.context !== undefined) out.context = plain(f.context);
  if (f.debug_ids && typeof f.debug_ids === "object") out.debug_ids = f.debug_ids;
  if (f.tags && typeof f.tags === "object") {
    out.tags = {};
    Object.keys(f.tags).slice(0, 50).forEach((k) => (out.tags[cap(k, 256)] = cap(f.tags[k], 256)));
  }
  return out;
}

function initRetrospec(options) {
  try {
    if (typeof window === "undefined" || typeof document === "undefined") return NOOP;
    const existing = window[GLOBAL];
    if (existing) return existing;
    const opts = Object.assign({}, DEFAULTS);
    for (const key in options || {}) if (options[key] !== undefined) opts[key] = options[key];
    const client = createClient(opts);
    if (client) window[GLOBAL] = client;
    return client || NOOP;
  } catch (e) {
    return NOOP;
  }
}

function createClient(opts) {
  if (!opts.apiBaseUrl || !opts.apiKey || typeof window.fetch !== "function") {
    console.warn("Retrospec: apiBaseUrl and apiKey are required; not recording");
    return null;
  }
  const base = String(opts.apiBaseUrl).replace(/\/+$/, "");
  const ingestUrl = absoluteUrl(base + "/api/v1/ingest");
  // Our own requests skip every fetch hook, ours included.
  const transport = createTransport(ingestUrl + "?key=" + encodeURIComponent(opts.apiKey),
    window.fetch.bind(window), opts.maxQueueBytes);
  const keep = [].concat(opts.keepQueryParams || []).map(String);
  const clean = (url) => (opts.stripQueryStrings ? stripQuery(String(url), keep) : String(url));
  const cleanText = (text) => (opts.stripQueryStrings ? stripTextUrls(text, keep) : text);
  const replacer = opts.stripQueryStrings ? urlReplacer(keep) : undefined;
  const failsOn = statusMatcher(opts.networkFailureStatus);
  const ignore = [].concat(opts.ignoreErrors || []);

  let active = true;
  let busy = false;
  let stopRecorder = null;
  let events = []; // serialised events of the next batch
  let eventBytes = 0;
  let failures = [];
  let segments = []; // buffer mode: [{start, events, bytes}], each from a full snapshot on
  let bufferBytes = 0;
  let lastHref = location.href;
  let lastPersist = 0;
  let lastActivity = 0;
  let soonTimer = null;
  let checkoutTimer = null;
  const flushTimer = setInterval(() => guard(tick), Math.max(100, opts.flushIntervalMs));

  let anonymousId = readStore("localStorage", ANON_KEY);
  if (typeof anonymousId !== "string") {
    anonymousId = uuid();
    writeStore("localStorage", ANON_KEY, anonymousId);
  }

  function newSession(t, user) {
    // Sampled sessions record continuously; the rest keep a rolling buffer (or nothing) and
    // only send it along with a failure. Failures themselves are always sent.
    const sampled = Math.random() < opts.sessionSampleRate;
    const mode = sampled ? "session" : Math.random() < opts.errorSampleRate ? "buffer" : "off";
    return { id: uuid(), started: t, last: t, seq: 0, mode, sampled, user, open: true };
  }

  let session = readStore("sessionStorage", SESSION_KEY);
  // `open` is cleared at page hide; still set means this sessionStorage was copied from a live
  // tab ("duplicate tab"), which must not share the session and its sequence numbers.
  if (!session || typeof session.id !== "string" || session.open ||
      !(now() - session.last < opts.inactivityTimeoutMs)) {
    session = newSession(now(), null);
  }
  if (opts.user) session.user = pickUser(opts.user);
  session.last = now();
  session.open = true;
  persist(true);

  function persist(force) {
    const t = now();
    if (!force && t - lastPersist < 5000) return;
    lastPersist = t;
    writeStore("sessionStorage", SESSION_KEY, session);
  }

  // Run our own work with every error contained and every hook muted, so nothing we do can
  // throw into the page or capture itself (console.error inside beforeSend, for example).
  function guard(fn) {
    if (busy) return;
    busy = true;
    try {
      fn();
    } catch (e) {
    } finally {
      busy = false;
    }
  }

  function onEvent(ev) {
    if (!active) return;
    try {
      // Every URL the recorded DOM carries (href, src, srcset, action, ...) loses its query.
      const text = JSON.stringify(ev, replacer);
      if (session.mode === "buffer") return bufferEvent(ev, text);
      events.push(text);
      eventBytes += text.length;
      // Ship a full snapshot at once, compressed, rather than leave it to an unload beacon.
      if (ev.type === FULL_SNAPSHOT || eventBytes > MAX_BATCH_BYTES || events.length > MAX_BATCH_EVENTS) {
        flushSoon(0);
      }
    } catch (e) {}
  }

  function bufferEvent(ev, text) {
    if (ev.type === META || !segments.length) segments.push({ start: ev.timestamp, events: [], bytes: 0 });
    const seg = segments[segments.length - 1];
    seg.events.push(text);
    seg.bytes += text.length;
    bufferBytes += text.length;
    // Drop the oldest segment once the next one alone covers the window (it starts with a
    // full snapshot, so the buffer always stays replayable).
    const horizon = now() - opts.bufferMs;
    while (segments.length > 1 && (segments[1].start <= horizon || bufferBytes > MAX_BUFFER_BYTES)) {
      bufferBytes -= segments.shift().bytes;
    }
  }

  function promoteBuffer() {
    // A failure in buffer mode: send the buffered past with it and record the rest of the
    // session continuously, like a sampled one.
    segments.forEach((seg) => seg.events.forEach((text) => events.push(text)));
    segments = [];
    bufferBytes = 0;
    session.mode = "session";
    persist(true);
    syncRecorder(false);
  }

  function startRecorder() {
    if (!RRWEB || typeof RRWEB.record !== "function") return;
    try {
      stopRecorder = RRWEB.record({
        emit: onEvent,
        maskAllInputs: !!opts.maskAllInputs,
        maskInputOptions: { password: true },
        // Text typed into contenteditable elements is masked like input values.
        maskTextSelector: [opts.maskTextSelector, opts.maskAllInputs ? EDITABLE : null]
          .filter(Boolean).join(", ") || undefined,
        blockSelector: opts.blockSelector || undefined,
        slimDOMOptions: "all",
        sampling: { scroll: 150, input: "last", media: 800 },
        recordAfter: "DOMContentLoaded",
        checkoutEveryNms: opts.checkoutMs > 0 ? opts.checkoutMs : undefined,
        recordCanvas: false,
        collectFonts: false,
        inlineImages: false,
        errorHandler: () => true, // rrweb's own errors must not reach the page either
      }) || null;
    } catch (e) {
      stopRecorder = null;
    }
  }

  function syncRecorder(fresh) {
    const want = active && session.mode !== "off";
    if (want && !stopRecorder) startRecorder();
    else if (!want && stopRecorder) {
      stopRecorder();
      stopRecorder = null;
    } else if (want && fresh) {
      try {
        RRWEB.record.takeFullSnapshot();
      } catch (e) {}
    }
    clearInterval(checkoutTimer);
    checkoutTimer = null;
    if (want && session.mode === "buffer") {
      // A fresh full snapshot per window keeps the buffer replayable after old events go.
      checkoutTimer = setInterval(() => guard(() => RRWEB.record.takeFullSnapshot()), opts.bufferMs);
    }
  }

  function addCustom(tag, payload) {
    if (!stopRecorder) return;
    try {
      RRWEB.record.addCustomEvent(tag, payload);
    } catch (e) {} // before the first snapshot rrweb refuses custom events
  }

  // Cut the pending events and failures into batches, each taking the next sequence number.
  function cut(maxBytes) {
    if (!events.length && !failures.length) return;
    const meta = {
      id: session.id,
      started_at: session.started,
      anonymous_id: anonymousId,
      user: session.user || undefined,
      user_agent: navigator.userAgent,
      url: clean(location.href),
      release: str(opts.release, 256),
      environment: str(opts.environment, 256),
      sdk: "retrospec.js/" + SDK_VERSION,
      sampled: !!session.sampled,
    };
    let i = 0;
    do {
      const piece = [];
      let bytes = 0;
      while (i < events.length && (!piece.length || bytes + events[i].length <= maxBytes)) {
        bytes += events[i].length;
        piece.push(events[i++]);
      }
      const batch = { seq: session.seq++, site: opts.site, session: meta, events: piece };
      batch.failures = failures.splice(0, 50);
      transport.push(batch);
    } while (i < events.length || failures.length);
    events = [];
    eventBytes = 0;
    persist(true); // the sequence numbers are spent even if the page dies right now
  }

  function tick() {
    clearTimeout(soonTimer);
    soonTimer = null;
    cut(Infinity);
    persist(false);
    transport.pump();
  }

  function flushSoon(ms) {
    if (soonTimer) return;
    soonTimer = setTimeout(() => guard(tick), ms);
  }

  function rotate(t) {
    // Inactive too long: what was recorded belongs to the old session; start a new one.
    cut(Infinity);
    segments = [];
    bufferBytes = 0;
    session = newSession(t, session.user);
    persist(true);
    syncRecorder(true);
  }

  // Called from the guarded listeners below.
  function onActivity() {
    const t = now();
    if (t - lastActivity < 1000) return;
    lastActivity = t;
    if (t - session.last > opts.inactivityTimeoutMs) rotate(t);
    session.last = t;
    persist(false);
  }

  function report(f) {
    f.url = clean(location.href);
    const text = (f.type ? f.type + ": " : "") + (f.message || "");
    for (const p of ignore) {
      if (typeof p === "string" ? text.indexOf(p) >= 0 : p instanceof RegExp && ((p.lastIndex = 0), p.test(text))) {
        return;
      }
    }
    f.ts = f.ts || now();
    // A beforeSend that throws drops the failure: it may be the page's PII scrubber.
    if (typeof opts.beforeSend === "function" && !(f = opts.beforeSend(f))) return;
    if (failures.length >= MAX_PENDING_FAILURES) return;
    f = normalizeFailure(f, clean(location.href));
    if (!f.debug_ids) f.debug_ids = debugIdsFor(f.stack);
    f.stack = cleanText(f.stack);
    f.message = cleanText(f.message);
    addCustom("retrospec.failure", {
      kind: f.kind,
      type: f.type,
      message: f.message && cap(f.message, 300),
      method: f.method,
      request_url: f.request_url,
      status: f.status,
      ts: f.ts,
    });
    failures.push(f);
    if (session.mode === "buffer") promoteBuffer();
    flushSoon(FAILURE_FLUSH_MS);
  }

  // Compared raw (two routes may differ only in their query), recorded cleaned.
  function navigated() {
    if (location.href === lastHref) return;
    lastHref = location.href;
    addCustom("navigation", { url: clean(lastHref) });
  }

  const sink = {
    options: opts,
    active: () => active,
    busy: () => busy,
    guard,
    report,
    navigated,
    clean,
    failsOn: (status) => {
      try {
        return !!failsOn(status);
      } catch (e) {
        return false;
      }
    },
    isOwn: (url) => {
      try {
        return absoluteUrl(url).indexOf(ingestUrl) === 0;
      } catch (e) {
        return false;
      }
    },
  };
  const uninstall = installCapture(sink);

  const listeners = [];
  const on = (target, type, fn) => {
    const wrapped = () => guard(fn);
    target.addEventListener(type, wrapped, { capture: true, passive: true });
    listeners.push(() => target.removeEventListener(type, wrapped, { capture: true, passive: true }));
  };
  ["pointerdown", "keydown", "scroll", "touchstart"].forEach((type) => on(window, type, onActivity));
  on(document, "visibilitychange", () => {
    if (document.visibilityState === "hidden") {
      cut(Infinity);
      persist(true);
      transport.pump();
    } else {
      onActivity();
      transport.wake();
    }
  });
  // The page is going away: no time for compression, so beacon what is left in small pieces.
  on(window, "pagehide", () => {
    cut(BEACON_PIECE);
    session.open = false;
    persist(true);
    transport.beaconAll();
  });
  on(window, "pageshow", () => {
    session.open = true; // back from the back/forward cache
    persist(true);
  });
  on(window, "online", () => transport.wake());

  syncRecorder(false);

  const api = {
    flush() {
      try {
        guard(() => cut(Infinity));
        return transport.drain();
      } catch (e) {
        return Promise.resolve();
      }
    },
    identify(user) {
      guard(() => {
        session.user = pickUser(user);
        persist(true);
      });
    },
    captureException(error, context) {
      guard(() => {
        seenBefore(error); // asked for explicitly: always sent, and console.error(error) after is not
        const f = errorFailure("custom", error, describe(error));
        if (context && typeof context === "object") {
          const { fingerprint, tags, ...rest } = context;
          f.fingerprint = fingerprint;
          f.tags = tags;
          f.context = rest;
        }
        report(f);
      });
    },
    stop() {
      if (!active) return Promise.resolve();
      guard(() => {
        cut(Infinity);
        session.open = false;
        persist(true);
      });
      active = false;
      clearInterval(flushTimer);
      clearTimeout(soonTimer);
      guard(syncRecorder);
      listeners.forEach((off) => off());
      guard(uninstall);
      if (window[GLOBAL] === api) delete window[GLOBAL];
      return transport.drain();
    },
  };
  return api;
}

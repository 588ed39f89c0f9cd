// RetroSpec browser SDK, part 2 of 4: delivery of batches to POST /api/v1/ingest.
// One request at a time, in sequence order, so a session's chunks arrive in order. Requests use
// text/plain and ?key= so they are "simple" CORS requests: no preflight, and sendBeacon works.

const KEEPALIVE_MAX = 60000; // browsers refuse keepalive/beacon bodies past 64 KiB in flight
const MAX_QUEUE_BATCHES = 100;
const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 30000;

function gzip(text) {
  if (typeof CompressionStream !== "function") return Promise.resolve(text);
  try {
    const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
    return new Response(stream).arrayBuffer().then((buf) => new Uint8Array(buf), () => text);
  } catch (e) {
    return Promise.resolve(text);
  }
}

function retryAfterMs(header) {
  if (!header) return 0;
  const seconds = Number(header);
  if (isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(header);
  return isFinite(at) ? Math.max(0, at - now()) : 0;
}

// The envelope with the events spliced in as the strings they were serialised to on arrival.
function encodeBatch(b) {
  const env = { v: 1, seq: b.seq, session: b.session, failures: b.failures };
  if (b.site) env.site = b.site;
  const head = JSON.stringify(env);
  b.text = b.events && b.events.length
    ? head.slice(0, -1) + ',"events":[' + b.events.join(",") + "]}"
    : head;
  b.gz = null;
}

function createTransport(endpoint, nativeFetch, maxBytes) {
  const queue = [];
  let sending = null;
  let nextAt = 0;
  let attempts = 0;
  let timer = null;
  let waiters = [];
  let disabled = false;

  function settle() {
    const done = waiters;
    waiters = [];
    done.forEach((resolve) => resolve());
  }

  function remove(b) {
    const i = queue.indexOf(b);
    if (i >= 0) queue.splice(i, 1);
  }

  // Replay data goes, failures stay. The sequence number is kept on purpose: if the full batch
  // did land earlier the server keeps that one (it has the same failures), otherwise this one
  // lands; either way no failure is lost or stored twice.
  function dropEvents(b) {
    b.events = null;
    if (b.failures.length) encodeBatch(b);
    else remove(b);
  }

  function bound() {
    let total = 0;
    queue.forEach((b) => (total += b.text.length));
    for (const b of queue.slice()) {
      if (total <= maxBytes && queue.length <= MAX_QUEUE_BATCHES) return;
      if (b === sending || !b.events) continue;
      total -= b.text.length;
      dropEvents(b);
      if (queue.indexOf(b) >= 0) total += b.text.length;
    }
    while (queue.length > MAX_QUEUE_BATCHES || (total > maxBytes && queue.length > 1)) {
      const victim = queue[0] === sending ? queue[1] : queue[0];
      total -= victim.text.length;
      remove(victim);
    }
  }

  function push(b) {
    if (disabled) return;
    encodeBatch(b);
    queue.push(b);
    bound();
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(pump, ms);
  }

  function pump() {
    if (disabled) return settle();
    if (sending) return;
    if (!queue.length) return settle();
    const wait = nextAt - now();
    if (wait > 0) return schedule(wait);
    const b = (sending = queue[0]);
    b.phase = "compress";
    (b.gz ? Promise.resolve(b.gz) : gzip(b.text))
      .then((data) => {
        if (b.beaconed) throw new Error("sent as a beacon");
        b.gz = data;
        b.phase = "fetch";
        const size = typeof data === "string" ? data.length : data.byteLength;
        return nativeFetch(endpoint, {
          method: "POST",
          body: data,
          headers: { "Content-Type": "text/plain" },
          credentials: "omit",
          keepalive: size <= KEEPALIVE_MAX,
        });
      })
      .then(
        (res) => result(b, res.status, res.headers.get("Retry-After")),
        () => result(b, b.beaconed ? -1 : 0, null),
      )
      .catch(() => {})
      .then(() => {
        if (sending === b) sending = null;
        b.phase = null;
        pump();
      });
  }

  function result(b, status, retryAfter) {
    sending = null;
    if (status === -1) return;
    if ((status === 507 || status === 413) && b.events && b.events.length) {
      // Low disk, or the batch or session is too big for replay data: the server refuses the
      // replay data but takes failures, so they go again at once without it.
      return dropEvents(b);
    }
    if (status === 413) return remove(b); // failures alone too big: retrying cannot help
    // 507 for failures means "nothing stored, retry later" (never "dropped"): they stay
    // queued and go again after the wait below, like on a 5xx.
    if (status >= 200 && status < 500 && status !== 429 && status !== 408) {
      // Accepted, or refused for good (bad input, unknown key): retrying cannot help.
      remove(b);
      attempts = 0;
      if (status === 401 || status === 403) {
        // Unknown key or an origin the site does not allow: every later batch would be refused.
        disabled = true;
        queue.length = 0;
      }
      return;
    }
    // Network error, 5xx (507 included), 408 or 429: back off, and let flush() callers stop
    // waiting.
    attempts++;
    const backoff = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * Math.pow(2, attempts - 1));
    const delay = ((status === 429 || status === 507) && retryAfterMs(retryAfter)) ||
      backoff * (0.8 + Math.random() * 0.4);
    nextAt = now() + delay;
    settle();
  }

  // Page is going away: hand what is not already in a keepalive fetch to sendBeacon, which the
  // browser delivers after the page is gone. Same sequence numbers, so a repeat is a no-op.
  function beaconAll() {
    if (disabled || !navigator.sendBeacon) return;
    for (const b of queue.slice()) {
      if (b === sending && b.phase === "fetch") continue;
      let ok = false;
      try {
        ok = navigator.sendBeacon(endpoint, new Blob([b.gz || b.text], { type: "text/plain" }));
      } catch (e) {}
      if (ok) {
        b.beaconed = true;
        remove(b);
      }
    }
  }

  return {
    push,
    pump,
    beaconAll,
    // Connectivity is back (or the tab is visible again): retry now instead of after backoff.
    wake() {
      if (attempts) nextAt = 0;
      pump();
    },
    // Resolves when the queue is empty, or at the next failed attempt (no waiting on backoff).
    drain() {
      return new Promise((resolve) => {
        if (disabled || (!queue.length && !sending) || nextAt > now()) return resolve();
        waiters.push(resolve);
        pump();
      });
    },
    pending: () => queue.length,
  };
}

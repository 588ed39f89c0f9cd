// Replay page: loads the session's rrweb events segment by segment, mounts the vendored
// rrweb-player as soon as the segments that hold the requested time have arrived, and adds the
// rest in the background. The marker list is lazy: the page carries its first screen, the rest
// comes from /markers into a virtual list, and the current marker is found by binary search.
//
// Segments (replay/artifact.py): [start_ts, end_ts, events, checkpoint]; a checkpoint segment
// starts with a full snapshot, so showing time T needs only the segments from the checkpoint at
// or before T up to T (rrweb itself replays from the last Meta/full snapshot before a seek).
//
// The recorded page is rebuilt by rrweb in an iframe sandboxed WITHOUT allow-scripts, and the
// dashboard's CSP (script-src 'self') also covers that same-origin about:blank document. That
// CSP also keeps the recorded page's remote assets from loading, unless the site allows them;
// either way the recorded page's prefetch/preload hints and referrer/http-equiv metas are
// defused here, before the player ever sees them.
(function () {
  "use strict";

  var host = document.getElementById("replay");
  var listEl = document.getElementById("marker-list");
  var lib = window.rrwebPlayer || {};
  var Player = typeof lib === "function" ? lib : lib.Player || lib.default;
  var canPlay = !!host && typeof Player === "function";

  var statusEl = document.getElementById("player-status");
  var jumpBefore = host ? parseInt(host.getAttribute("data-jump-before") || "3000", 10) : 3000;
  var startTs = host ? parseInt(host.getAttribute("data-start-ts") || "", 10) : NaN;
  var openAt = host ? parseInt(host.getAttribute("data-t") || "-1", 10) : -1;
  var pollMs = host ? parseInt(host.getAttribute("data-poll-ms") || "5000", 10) : 5000;
  var TAG_COLOURS = {
    failure: "#e5484d",
    rage_click: "#f76b15",
    click: "#8e9cf8",
    navigation: "#12a594",
  };
  var KIND_NAMES = {
    failure: "Failure",
    click: "Click",
    rage_click: "Rage click",
    navigation: "Page",
    input: "Input",
  };
  var TAG_SLOTS = 150; // progress-bar ticks per kind at most (the bar is ~1,000 px wide)
  var PLACEHOLDER = "retrospec/span"; // inert plugin events holding the timeline's two ends

  var index = null; // {rev, status, last_seen_at, segments}
  var segs = [];
  var player = null;
  var baseTs = 0; // first event of the replay = player time 0
  var lastTs = 0;
  var pending = {}; // segment number -> promise of its prepared events
  var done = {}; // segment number -> true once its events are in the player
  var held = {}; // segment number -> prepared events fetched before the player exists
  var loadOrder = []; // segment numbers in the order they were requested (tests, bench)
  var loadedEnd = 0; // newest event timestamp the player holds
  var seeking = null; // the time a seek waits for, while its segments load

  function setStatus(text, isError) {
    if (!statusEl) return;
    statusEl.textContent = text;
    statusEl.className = "player-status" + (isError ? " error" : "");
    statusEl.hidden = !text;
  }

  function clock(ms) {
    var seconds = Math.max(0, Math.floor(ms / 1000));
    var h = Math.floor(seconds / 3600);
    var m = Math.floor((seconds % 3600) / 60);
    var s = seconds % 60;
    var ss = (s < 10 ? "0" : "") + s;
    if (h) return h + ":" + (m < 10 ? "0" : "") + m + ":" + ss;
    return m + ":" + ss;
  }

  // ---- markers: the lazy, virtual list and an O(log n) highlight ------------------------

  var markers = []; // [ts, offset_ms, kind, label], time order
  var activeIdx = -1;
  var rowHeight = 0;
  var virtual = false;
  var windowFirst = -1;
  var windowLast = -1;

  function upperBound(arr, ts, key) {
    // Number of entries with key(entry) <= ts.
    var lo = 0;
    var hi = arr.length;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (key(arr[mid]) <= ts) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  function markersFromPage() {
    if (!listEl) return;
    var buttons = listEl.querySelectorAll(".marker");
    for (var i = 0; i < buttons.length; i++) {
      var b = buttons[i];
      var label = b.querySelector(".m-label");
      markers.push([
        parseInt(b.getAttribute("data-ts"), 10),
        parseInt(b.getAttribute("data-offset"), 10),
        b.getAttribute("data-kind") || "",
        (label && label.getAttribute("title")) || "",
      ]);
    }
  }

  function markerRow(i) {
    var m = markers[i];
    var li = document.createElement("li");
    li.style.height = rowHeight + "px";
    var b = document.createElement("button");
    b.type = "button";
    b.className = "marker kind-" + m[2] + (i === activeIdx ? " current" : "");
    b.setAttribute("data-ts", String(m[0]));
    b.setAttribute("data-offset", String(m[1]));
    b.setAttribute("data-index", String(i));
    if (!canPlay) b.disabled = true;
    var time = document.createElement("span");
    time.className = "m-time";
    time.textContent = clock(m[1]);
    var icon = document.createElement("span");
    icon.className = "m-icon";
    icon.setAttribute("aria-hidden", "true");
    var label = document.createElement("span");
    label.className = "m-label";
    label.title = m[3];
    var kind = document.createElement("span");
    kind.className = "m-kind";
    kind.textContent = KIND_NAMES[m[2]] || m[2];
    label.appendChild(kind);
    label.appendChild(document.createTextNode(" " + m[3]));
    b.appendChild(time);
    b.appendChild(icon);
    b.appendChild(label);
    li.appendChild(b);
    return li;
  }

  function pad(height) {
    var li = document.createElement("li");
    li.setAttribute("aria-hidden", "true");
    li.style.height = height + "px";
    return li;
  }

  function renderWindow(force) {
    if (!virtual) return;
    var view = listEl.clientHeight || 400;
    var first = Math.max(0, Math.floor(listEl.scrollTop / rowHeight) - 10);
    var last = Math.min(markers.length, first + Math.ceil(view / rowHeight) + 20);
    if (!force && first === windowFirst && last === windowLast) return;
    windowFirst = first;
    windowLast = last;
    var frag = document.createDocumentFragment();
    frag.appendChild(pad(first * rowHeight));
    for (var i = first; i < last; i++) frag.appendChild(markerRow(i));
    frag.appendChild(pad((markers.length - last) * rowHeight));
    listEl.replaceChildren(frag);
  }

  function useMarkers(rows) {
    markers = rows;
    if (!listEl || rows.length <= listEl.querySelectorAll(".marker").length) return;
    var sample = listEl.querySelector("li");
    rowHeight = (sample && sample.getBoundingClientRect().height) || 34;
    virtual = true;
    var more = document.getElementById("marker-more");
    if (more) more.remove();
    listEl.addEventListener("scroll", function () {
      renderWindow(false);
    }, { passive: true });
    renderWindow(true);
  }

  function highlight(currentMs) {
    // Called on every frame: a binary search and, only when the marker changes, two rows.
    var idx = upperBound(markers, baseTs + currentMs, function (m) {
      return m[0];
    }) - 1;
    if (idx === activeIdx || !listEl) return;
    var old = listEl.querySelector(".marker.current");
    if (old) old.classList.remove("current");
    activeIdx = idx;
    if (idx < 0) return;
    var row = virtual
      ? listEl.querySelector('.marker[data-index="' + idx + '"]')
      : listEl.querySelectorAll(".marker")[idx];
    if (row) row.classList.add("current");
  }

  function loadMarkers() {
    if (!host || !listEl) return Promise.resolve();
    var total = parseInt(listEl.getAttribute("data-total") || "0", 10);
    var url = host.getAttribute("data-markers-url");
    if (!url || total <= listEl.querySelectorAll(".marker").length) return Promise.resolve();
    // Same request as the page head's preload (no extra headers), so it is served from it.
    return fetch(url, { credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (body) {
        useMarkers(Array.isArray(body.markers) ? body.markers : []);
      })
      .catch(function () {
        /* the first screen stays; the player still works */
      });
  }

  // ---- recorded-page hints (defused by replay-safety.js, shared with the video renderer) -----

  var nodeTags = {}; // node id -> tag name, kept across segments for later attribute mutations

  function prepare(events) {
    // The player draws custom events (rrweb type 5) as tags on its progress bar. Our markers
    // replace the SDK's own custom events, which would otherwise show up a second time.
    var kept = [];
    for (var i = 0; i < events.length; i++) {
      var e = events[i];
      if (!e || e.type === 5 || typeof e.timestamp !== "number") continue;
      kept.push(e);
    }
    window.RetrospecReplaySafety.defuseHints(kept, nodeTags);
    return kept;
  }

  // ---- segments -----------------------------------------------------------------------------

  function segAt(ts) {
    return Math.max(0, upperBound(segs, ts, function (s) {
      return s[0];
    }) - 1);
  }

  function needed(ts) {
    // The segments that show time ts: from the checkpoint at or before it up to its own.
    var s = segAt(ts);
    var c = s;
    while (c > 0 && !segs[c][3]) c--;
    var out = [];
    for (var i = c; i <= s; i++) out.push(i);
    return out;
  }

  function fetchSegment(i) {
    var url = host.getAttribute("data-events-url") + "?seg=" + i + "&rev=" + encodeURIComponent(index.rev);
    // Same request as the page head's preload (no extra headers), so it is served from it.
    return fetch(url, { credentials: "same-origin" }).then(
      function (response) {
        if (response.redirected || response.status === 401) {
          window.location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
          throw new Error("login needed");
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      }
    );
  }

  function load(i) {
    if (!pending[i]) {
      loadOrder.push(i);
      var rev = index.rev;
      pending[i] = fetchSegment(i).then(function (events) {
        var prepared = prepare(Array.isArray(events) ? events : []);
        if (index.rev !== rev) return prepared; // rebuilt meanwhile: refresh() takes over
        if (player) addEvents(prepared);
        else held[i] = prepared;
        done[i] = true;
        return prepared;
      });
      pending[i].catch(function () {
        delete pending[i]; // a later request tries again
      });
    }
    return pending[i];
  }

  function placeholder(ts) {
    return { type: 6, timestamp: ts, data: { plugin: PLACEHOLDER, payload: {} } };
  }

  function addEvents(list) {
    // Events before the replayer's baseline are only stored (casting them now would apply them
    // to a page already drawn from a later checkpoint); later ones are also scheduled when the
    // player is running, as rrweb's own addEvent does.
    if (!list.length) return;
    var replayer = player.getReplayer();
    var ctx = replayer.service.state.context;
    var evs = ctx.events;
    var baseline = ctx.baselineTime;
    var timer = ctx.timer;
    var running = timer && timer.isActive();
    var at = upperBound(evs, list[0].timestamp, function (e) {
      return e.timestamp;
    });
    // A segment is one contiguous stretch of time: insert it as a block, in pieces small
    // enough for apply().
    for (var k = 0; k < list.length; k += 8000) {
      var part = list.slice(k, k + 8000);
      Array.prototype.splice.apply(evs, [at + k, 0].concat(part));
    }
    for (var j = 0; j < list.length; j++) {
      var e = list[j];
      e.delay = e.timestamp - baseline;
      if (running && e.timestamp >= baseline) {
        timer.addAction({ doAction: replayer.getCastFn(e, false), delay: e.delay });
      }
      if (e.timestamp > loadedEnd) loadedEnd = e.timestamp;
    }
  }

  function offsetOf(ts) {
    return Math.max(0, Math.min(ts - baseTs, lastTs - baseTs));
  }

  function isPlaying() {
    try {
      return player.getReplayer().service.state.matches("playing");
    } catch (e) {
      return false;
    }
  }

  function ensure(ts) {
    var list = needed(ts);
    var missing = list.filter(function (i) {
      return !done[i];
    });
    return Promise.all(missing.map(load)).then(function () {
      return missing.length > 0;
    });
  }

  function seekTo(ts, play) {
    // Fetch what the time needs first, then let rrweb replay from the nearest checkpoint.
    seeking = ts;
    return ensure(ts).then(function () {
      if (seeking === ts) seeking = null;
      player.goto(offsetOf(ts), play);
    });
  }

  function jump(ts, play) {
    if (!player) return;
    var target = Math.max(baseTs, ts - (play ? jumpBefore : 0));
    seekTo(target, play);
  }

  var checkedSeg = -1;

  function onTime(currentMs) {
    highlight(currentMs);
    // A seek on the progress bar into a stretch not loaded yet: load it, then seek again.
    var ts = baseTs + currentMs;
    if (seeking !== null) return;
    var s = segAt(ts);
    if (s === checkedSeg && done[s]) return; // the common case: playing on within a segment
    checkedSeg = s;
    var missing = needed(ts).some(function (i) {
      return !done[i];
    });
    if (missing) {
      var play = isPlaying();
      seekTo(ts, play);
    }
  }

  function background(from, checkpoint) {
    // Forward from the first segment shown (what plays next), then back to the start.
    var order = [];
    for (var i = from + 1; i < segs.length; i++) order.push(i);
    for (var j = checkpoint - 1; j >= 0; j--) order.push(j);
    var step = function () {
      while (order.length && done[order[0]]) order.shift();
      if (!order.length) {
        host.setAttribute("data-complete", "1");
        schedulePoll();
        return;
      }
      load(order.shift()).then(
        function () {
          setTimeout(step, 0);
        },
        function () {
          setTimeout(step, 1000);
        }
      );
    };
    step();
  }

  // ---- a session still recording: new segments while someone watches ----------------------

  var pollTimer = null;

  function recording() {
    return index.status === "pending" || Date.now() - index.last_seen_at < 300000;
  }

  function schedulePoll() {
    if (pollTimer || !recording()) return;
    pollTimer = setTimeout(function () {
      pollTimer = null;
      fetch(host.getAttribute("data-index-url"), {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      })
        .then(function (r) {
          if (!r.ok) throw new Error("HTTP " + r.status);
          return r.json();
        })
        .then(function (body) {
          if (body.index) refresh(body.index);
        })
        .catch(function () {})
        .then(schedulePoll);
    }, pollMs);
  }

  function refresh(next) {
    // A rebuild keeps earlier segments byte for byte (the cut is a forward pass over time-ordered
    // events); what is new are events after the newest one the player holds.
    index.status = next.status;
    index.last_seen_at = next.last_seen_at;
    if (next.rev === index.rev) return;
    index.rev = next.rev;
    segs = next.segments;
    pending = {};
    done = {};
    var fresh = [];
    for (var i = 0; i < segs.length; i++) {
      if (segs[i][1] <= loadedEnd) done[i] = true;
      else fresh.push(i);
    }
    var chain = Promise.resolve();
    fresh.forEach(function (i) {
      chain = chain.then(function () {
        return fetchSegment(i).then(function (events) {
          var newer = prepare(Array.isArray(events) ? events : []).filter(function (e) {
            return e.timestamp > loadedEnd;
          });
          addEvents(newer);
          done[i] = true;
        });
      });
      // A seek meanwhile waits for this instead of fetching (and adding) the segment again.
      pending[i] = chain;
    });
    chain.then(function () {
      if (segs.length) {
        lastTs = Math.max(lastTs, segs[segs.length - 1][1]);
        // rrweb-player updates its timeline when an event goes through its own addEvent.
        player.addEvent(placeholder(lastTs));
      }
      host.setAttribute("data-rev", index.rev);
    });
  }

  // ---- mount ----------------------------------------------------------------------------

  function viewport(events) {
    for (var i = 0; i < events.length; i++) {
      var e = events[i];
      if (e.type === 4 && e.data && e.data.width && e.data.height) {
        return { width: e.data.width, height: e.data.height };
      }
    }
    return { width: 1280, height: 800 };
  }

  function frameSize(vp) {
    // Fit the recorded viewport's aspect ratio to the card; rrweb-player scales the page.
    var width = Math.max(280, host.clientWidth);
    var height = Math.round((width * vp.height) / vp.width);
    var maxHeight = Math.max(240, Math.round(window.innerHeight * 0.68));
    if (height > maxHeight) height = maxHeight;
    return { width: width, height: height };
  }

  function tagEvents() {
    // The player draws each tag as a 10 px tick on its progress bar, one DOM node apiece, and
    // a long session has thousands of clicks: past a few ticks per pixel they are a smear that
    // only slows the first frame. Each kind keeps one tick per slot (its first there), so every
    // stretch with a failure still shows one.
    var out = [];
    var taken = {};
    var span = Math.max(1, lastTs - baseTs);
    markers.forEach(function (m) {
      if (!TAG_COLOURS[m[2]]) return;
      var ts = Math.min(Math.max(m[0], baseTs), lastTs);
      var slot = m[2] + ":" + Math.floor(((ts - baseTs) / span) * TAG_SLOTS);
      if (taken[slot]) return;
      taken[slot] = true;
      out.push({ type: 5, timestamp: ts, data: { tag: m[2], payload: { label: m[3] } } });
    });
    return out;
  }

  function mount(first, target) {
    var events = [];
    first.forEach(function (i) {
      events = events.concat(held[i]);
      delete held[i];
    });
    if (!events.length) {
      setStatus("Not enough of this session has arrived to play yet. Reload in a few seconds.");
      return;
    }
    events.forEach(function (e) {
      if (e.timestamp > loadedEnd) loadedEnd = e.timestamp;
    });
    // Both ends of the whole replay are in the first mount, so the timeline is right before
    // the other segments arrive.
    var all = [placeholder(baseTs)].concat(events, tagEvents(), [placeholder(lastTs)]);
    all.sort(function (a, b) {
      return a.timestamp - b.timestamp; // stable: snapshots stay ahead of tags at their time
    });
    var vp = viewport(events);
    var size = frameSize(vp);
    setStatus("");
    player = new Player({
      target: host,
      // The sandboxing settings (no canvas replay, no focus, no virtual DOM) are shared with
      // the video renderer: replay-safety.js.
      props: window.RetrospecReplaySafety.playerProps({
        events: all,
        width: size.width,
        height: size.height,
        autoPlay: false,
        skipInactive: true,
        showController: true,
        tags: TAG_COLOURS,
        speedOption: [1, 2, 4, 8],
        mouseTail: { strokeStyle: "#6366f1", lineWidth: 2, duration: 500 },
      }),
    });
    window.retrospecPlayer = player; // for the browser tests and curious developers
    player.addEventListener("ui-update-current-time", function (e) {
      onTime(e.payload);
    });
    player.goto(offsetOf(target), false);
    // goto() draws synchronously: the first frame is in the DOM now (the benchmark reads this).
    host.setAttribute("data-first-frame-ms", String(Math.round(performance.now())));
    highlight(offsetOf(target));
    var resizeTimer = null;
    window.addEventListener("resize", function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(function () {
        var next = frameSize(vp);
        player.$set({ width: next.width, height: next.height });
        player.triggerResize();
      }, 150);
    });
    host.setAttribute("data-ready", "1");
    host.setAttribute("data-rev", index.rev);
  }

  function wireMarkers() {
    document.addEventListener("click", function (evt) {
      var button = evt.target.closest ? evt.target.closest("button[data-ts]") : null;
      if (!button || button.disabled) return;
      jump(parseInt(button.getAttribute("data-ts"), 10), true);
      if (host) host.scrollIntoView({ block: "nearest", behavior: "smooth" });
    });
  }

  markersFromPage();
  wireMarkers();
  var markersReady = loadMarkers();
  if (!canPlay) return;
  try {
    index = JSON.parse(document.getElementById("replay-index").textContent || "null");
  } catch (e) {
    index = null;
  }
  if (!index || !Array.isArray(index.segments) || !index.segments.length) {
    setStatus("The replay could not be loaded (no segment index). Reload to try again.", true);
    return;
  }
  segs = index.segments;
  baseTs = segs[0][0];
  lastTs = segs[segs.length - 1][1];
  // ?t= is an offset from the replay start as the server knows it.
  var target = openAt >= 0 ? (isNaN(startTs) ? baseTs : startTs) + openAt : baseTs;
  target = Math.min(Math.max(target, baseTs), lastTs);
  var first = needed(target);
  window.retrospecSegments = {
    order: loadOrder,
    first: first.slice(),
    isDone: function (i) {
      return !!done[i];
    },
  };
  Promise.all(first.map(load).concat([markersReady]))
    .then(function () {
      mount(first, target);
      if (player) background(first[first.length - 1], first[0]);
    })
    .catch(function (err) {
      if (String(err && err.message) === "login needed") return;
      setStatus("The replay could not be loaded (" + (err && err.message) + "). Reload to try again.", true);
    });
})();

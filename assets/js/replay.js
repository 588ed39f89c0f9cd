// Replay page: loads the session's rrweb events, mounts the vendored rrweb-player with the
// timeline markers as tags on its progress bar, and makes the marker list jump the player.
// The recorded page is rebuilt by rrweb in an iframe sandboxed WITHOUT allow-scripts, and the
// dashboard's CSP (script-src 'self') also covers that same-origin about:blank document. That
// CSP also keeps the recorded page's remote assets from loading, unless the site allows them;
// either way the recorded page's prefetch/preload hints and referrer/http-equiv metas are
// defused (replay-safety.js, shared with the video renderer) before the player ever sees them.
(function () {
  "use strict";

  var host = document.getElementById("replay");
  // The UMD build's global is a module namespace: { Player, default }.
  var lib = window.rrwebPlayer || {};
  var Player = typeof lib === "function" ? lib : lib.Player || lib.default;
  if (!host || typeof Player !== "function") return;

  var statusEl = document.getElementById("player-status");
  var markers = [];
  try {
    markers = JSON.parse(document.getElementById("replay-markers").textContent || "[]");
  } catch (e) {
    markers = [];
  }
  var jumpBefore = parseInt(host.getAttribute("data-jump-before") || "3000", 10);
  var startTs = parseInt(host.getAttribute("data-start-ts") || "", 10);
  var openAt = parseInt(host.getAttribute("data-t") || "-1", 10);
  var TAG_COLOURS = {
    failure: "#e5484d",
    rage_click: "#f76b15",
    click: "#8e9cf8",
    navigation: "#12a594",
  };
  var player = null;
  var baseTs = 0; // timestamp of the first event = player time 0
  var lastTs = 0;

  function setStatus(text, isError) {
    if (!statusEl) return;
    statusEl.textContent = text;
    statusEl.className = "player-status" + (isError ? " error" : "");
    statusEl.hidden = !text;
  }

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

  function prepare(events) {
    // The player draws custom events (rrweb type 5) as tags on its progress bar. Our markers
    // replace the SDK's own custom events, which would otherwise show up a second time.
    var kept = events.filter(function (e) {
      return e && e.type !== 5;
    });
    window.RetrospecReplaySafety.defuseHints(kept);
    kept.sort(function (a, b) {
      return a.timestamp - b.timestamp;
    });
    if (!kept.length) return kept;
    baseTs = kept[0].timestamp;
    lastTs = kept[kept.length - 1].timestamp;
    markers.forEach(function (m) {
      if (!TAG_COLOURS[m.kind]) return;
      var ts = Math.min(Math.max(m.ts, baseTs), lastTs);
      kept.push({ type: 5, timestamp: ts, data: { tag: m.kind, payload: { label: m.label } } });
    });
    // Stable sort: snapshots stay ahead of tags sharing their timestamp.
    kept.sort(function (a, b) {
      return a.timestamp - b.timestamp;
    });
    return kept;
  }

  function offsetOf(ts) {
    return Math.max(0, Math.min(ts - baseTs, lastTs - baseTs));
  }

  function jump(ts, play) {
    if (!player) return;
    var target = Math.max(0, offsetOf(ts) - (play ? jumpBefore : 0));
    player.goto(target, play);
  }

  function highlight(currentMs) {
    var ts = baseTs + currentMs;
    var buttons = document.querySelectorAll("#marker-list .marker");
    var active = null;
    for (var i = 0; i < buttons.length; i++) {
      var b = buttons[i];
      b.classList.remove("current");
      if (parseInt(b.getAttribute("data-ts"), 10) <= ts) active = b;
    }
    if (active) active.classList.add("current");
  }

  function wireMarkers() {
    document.addEventListener("click", function (evt) {
      var button = evt.target.closest ? evt.target.closest("button[data-ts]") : null;
      if (!button || button.disabled) return;
      jump(parseInt(button.getAttribute("data-ts"), 10), true);
      host.scrollIntoView({ block: "nearest", behavior: "smooth" });
    });
  }

  function mount(events) {
    if (events.length < 2) {
      setStatus("Not enough of this session has arrived to play yet. Reload in a few seconds.");
      return;
    }
    var vp = viewport(events);
    var size = frameSize(vp);
    setStatus("");
    player = new Player({
      target: host,
      props: {
        events: events,
        width: size.width,
        height: size.height,
        autoPlay: false,
        skipInactive: true,
        showController: true,
        tags: TAG_COLOURS,
        speedOption: [1, 2, 4, 8],
        mouseTail: { strokeStyle: "#6366f1", lineWidth: 2, duration: 500 },
        // Never UNSAFE_replayCanvas: it would add allow-scripts to the iframe sandbox.
        UNSAFE_replayCanvas: false,
        triggerFocus: false,
      },
    });
    window.retrospecPlayer = player; // for the browser tests and curious developers
    player.addEventListener("ui-update-current-time", function (e) {
      highlight(e.payload);
    });
    if (openAt >= 0) {
      // ?t= is an offset from the replay start as the server knows it.
      var ts = isNaN(startTs) ? baseTs + openAt : startTs + openAt;
      jump(ts, false);
      highlight(offsetOf(ts));
    }
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
  }

  wireMarkers();
  fetch(host.getAttribute("data-events-url"), {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  })
    .then(function (response) {
      if (response.redirected || response.status === 401) {
        window.location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
        throw new Error("login needed");
      }
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    })
    .then(function (events) {
      mount(prepare(Array.isArray(events) ? events : []));
    })
    .catch(function (err) {
      if (String(err && err.message) === "login needed") return;
      setStatus("The replay could not be loaded (" + (err && err.message) + "). Reload to try again.", true);
    });
})();

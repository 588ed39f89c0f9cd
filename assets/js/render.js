// The video renderer's page (retrospec/video/render.py drives it in headless chromium): the
// dashboard's rrweb-player configuration (sandboxed iframe without allow-scripts, no canvas
// replay, hints defused, the page's CSP blocking every other host) with the controller hidden,
// and a caption strip. Python steps the replayer's virtual clock frame by frame: pause at t,
// update the strip, wait for a paint, screenshot.
(function () {
  "use strict";

  var lib = window.rrwebPlayer || {};
  var Player = typeof lib === "function" ? lib : lib.Player || lib.default;
  var replayer = null;
  var baseTs = 0;

  function text(id, value) {
    var el = document.getElementById(id);
    el.textContent = value || "";
    el.hidden = !value;
  }

  function painted() {
    return new Promise(function (resolve) {
      requestAnimationFrame(function () {
        requestAnimationFrame(resolve);
      });
    });
  }

  window.retrospecRender = {
    // Mount the player on the events Python serves as /events.json; resolves to their base time.
    mount: function (width, height) {
      return fetch("/events.json")
        .then(function (response) {
          return response.json();
        })
        .then(function (events) {
          window.RetrospecReplaySafety.defuseHints(events);
          baseTs = events[0].timestamp;
          var player = new Player({
            target: document.getElementById("stage"),
            // The dashboard player's sandboxing settings, from replay-safety.js.
            props: window.RetrospecReplaySafety.playerProps({
              events: events,
              width: width,
              height: height,
              autoPlay: false,
              skipInactive: false,
              showController: false,
              mouseTail: false,
            }),
          });
          replayer = player.getReplayer();
          return baseTs;
        });
    },
    // Show the replay at timestamp ts with this caption, once it has been painted.
    step: function (ts, caption) {
      replayer.pause(Math.max(0, ts - baseTs));
      text("cap-clock", caption.clock);
      text("cap-url", caption.url);
      text("cap-action", caption.action);
      text("cap-failure", caption.failure);
      text("cap-skip", caption.skipping);
      return painted();
    },
  };
})();

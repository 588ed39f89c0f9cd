// What the dashboard's player (replay.js) and the video renderer (render.js) share, so a clip
// shows what the replay shows under the same guards: the rrweb-player settings that keep the
// rebuilt page inert, and the recorded page's request-making hints, defused before rrweb
// rebuilds it. Nodes are kept (mutations
// refer to them by id); prefetch/preload/preconnect links lose their href, a referrer meta can
// only tighten the policy, and http-equiv metas (refresh, CSP, cookies) lose their effect.
(function () {
  "use strict";

  var HINTS = /(^|\s)(prefetch|preload|modulepreload|preconnect|dns-prefetch|prerender)(\s|$)/i;

  function defuse(tag, attrs) {
    // Keep the node (mutations refer to it by id) but take away what would make a request.
    if (!attrs) return;
    // A mutation's node may come from a segment not loaded yet: judge by the attributes then.
    if ((tag === "link" || tag === undefined) && typeof attrs.rel === "string" && HINTS.test(attrs.rel)) {
      attrs.rel = "x-retrospec-dropped";
      delete attrs.href;
      delete attrs.imagesrcset;
    }
    if (tag === "meta" && String(attrs.name || "").toLowerCase() === "referrer") {
      attrs.content = "no-referrer"; // the recorded page's policy must not loosen ours
    } else if ((tag === "meta" || tag === undefined) && attrs["http-equiv"] !== undefined) {
      delete attrs["http-equiv"];
      delete attrs.content;
    }
  }

  function walk(node, depth, tags) {
    if (!node || typeof node !== "object" || depth > 500) return;
    if (node.type === 2) {
      var tag = String(node.tagName || "").toLowerCase();
      tags[node.id] = tag;
      defuse(tag, node.attributes);
    }
    var kids = node.childNodes;
    if (Array.isArray(kids)) for (var i = 0; i < kids.length; i++) walk(kids[i], depth + 1, tags);
  }

  // `tags` (node id -> tag name) may be passed again with each piece when events arrive in
  // segments, so an attribute change finds the tag of a node added in an earlier piece.
  function defuseHints(events, tags) {
    tags = tags || {};
    events.forEach(function (e) {
      if (!e || !e.data) return;
      if (e.type === 2) {
        walk(e.data.node, 0, tags);
      } else if (e.type === 3 && e.data.source === 0) {
        (e.data.adds || []).forEach(function (add) {
          walk(add && add.node, 0, tags);
        });
        (e.data.attributes || []).forEach(function (change) {
          if (change) defuse(tags[change.id], change.attributes);
        });
      }
    });
  }

  // rrweb-player props both players pass, merged under each one's own.
  var PLAYER_PROPS = {
    // Never UNSAFE_replayCanvas: it would add allow-scripts to the iframe sandbox.
    UNSAFE_replayCanvas: false,
    triggerFocus: false,
    // rrweb's virtual DOM batches a long fast-forward into one diff; our checkpoints keep a
    // seek to at most a few minutes of events, where applying them directly measured faster
    // (seek blocks and ?t= opens, README Performance), and the virtual DOM path has open bugs
    // such as nodes inserted before a jump missing after it (rrweb issue 1358).
    useVirtualDom: false,
  };

  function playerProps(own) {
    var props = {};
    Object.keys(own).forEach(function (k) {
      props[k] = own[k];
    });
    Object.keys(PLAYER_PROPS).forEach(function (k) {
      props[k] = PLAYER_PROPS[k]; // the shared guards win over anything passed in
    });
    return props;
  }

  window.RetrospecReplaySafety = { defuseHints: defuseHints, playerProps: playerProps };
})();

// The recorded page's request-making hints, defused before rrweb rebuilds it: shared by the
// dashboard's player (replay.js) and the video renderer (render.js). Nodes are kept (mutations
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

  window.RetrospecReplaySafety = { defuseHints: defuseHints };
})();

// RetroSpec dashboard glue: toasts for failed htmx requests, copy buttons, tidy filter URLs.
// Loaded on every dashboard page; no inline scripts anywhere (the CSP forbids them).
(function () {
  "use strict";

  var toastTimer = null;

  function toast(message, kind) {
    var el = document.getElementById("toast");
    if (!el) return;
    el.textContent = message;
    el.className = "toast " + (kind || "");
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () {
      el.hidden = true;
    }, kind === "error" ? 6000 : 2500);
  }
  window.retrospecToast = toast;

  // Failed htmx requests: the server answers htmx with a short plain-text reason.
  document.addEventListener("htmx:responseError", function (evt) {
    var xhr = evt.detail.xhr;
    var text = (xhr && xhr.responseText ? xhr.responseText : "").trim();
    if (!text || text.charAt(0) === "<" || text.length > 300) {
      text = "That did not work (HTTP " + (xhr ? xhr.status : "?") + "). Reload the page and try again.";
    }
    toast(text, "error");
  });
  document.addEventListener("htmx:sendError", function () {
    toast("Cannot reach the RetroSpec server. Is it running?", "error");
  });

  // Filter forms: leave empty fields out of the request and the pushed URL (?q=&site=&kind=).
  document.addEventListener("htmx:configRequest", function (evt) {
    if (evt.detail.verb !== "get") return;
    var params = evt.detail.parameters;
    var names = [];
    if (params && typeof params.keys === "function") {
      var it = params.keys();
      for (var step = it.next(); !step.done; step = it.next()) names.push(step.value);
    } else {
      names = Object.keys(params || {});
    }
    names.forEach(function (name) {
      var value = typeof params.get === "function" ? params.get(name) : params[name];
      if (value === "" || (name === "status" && value === "open") || (name === "sort" && value === "last_seen")) {
        if (typeof params.delete === "function") params.delete(name);
        else delete params[name];
      }
    });
  });

  // Copy buttons: data-copy names the element whose text (or value) is copied.
  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "copy-fallback";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (e) {
      ok = false;
    }
    document.body.removeChild(area);
    return ok;
  }

  function revealForManualCopy(source) {
    // Last resort (no clipboard access at all): show the text selected, ready for Ctrl+C.
    source.classList.add("copy-visible");
    if (typeof source.select === "function") {
      source.focus();
      source.select();
    }
    toast("Press Ctrl+C (⌘C) to copy the selected text.");
  }

  document.addEventListener("click", function (evt) {
    var button = evt.target.closest ? evt.target.closest("[data-copy]") : null;
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.value !== undefined && source.tagName === "TEXTAREA" ? source.value : source.textContent;
    var done = function () {
      toast(button.getAttribute("data-copied") || "Copied to the clipboard", "ok");
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () {
        if (fallbackCopy(text)) done();
        else revealForManualCopy(source);
      });
    } else if (fallbackCopy(text)) {
      done();
    } else {
      revealForManualCopy(source);
    }
  });
})();

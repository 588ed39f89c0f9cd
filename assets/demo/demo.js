// The /demo page: a tiny shop wired to the RetroSpec SDK, with a button per failure kind.
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("retrospec-demo-config").textContent);
  const retrospec = window.Retrospec.initRetrospec({
    apiBaseUrl: config.apiBaseUrl || location.origin,
    apiKey: config.apiKey,
    site: config.site,
    release: "demo-1.0.0",
    environment: "demo",
    flushIntervalMs: 2000,
  });
  retrospec.identify({ id: "demo-user", name: "Demo visitor" });

  const cart = [];
  const $ = (selector) => document.querySelector(selector);
  const say = (text) => {
    $("#status").textContent = text + " Sent within a few seconds.";
  };

  // --- the shop: client-side steps through the history API, like a single-page app ---
  function show(step) {
    document.querySelectorAll("[data-panel]").forEach((panel) => {
      if (!panel.classList.contains("break")) panel.hidden = panel.dataset.panel !== step;
    });
    document.querySelectorAll("[data-step]").forEach((link) => {
      link.classList.toggle("current", link.dataset.step === step);
    });
  }
  const stepOf = () => location.hash.replace("#/", "") || "shop";
  document.querySelectorAll("[data-step]").forEach((link) => {
    link.addEventListener("click", (ev) => {
      ev.preventDefault();
      history.pushState({}, "", link.getAttribute("href"));
      show(link.dataset.step);
    });
  });
  window.addEventListener("popstate", () => show(stepOf()));
  window.addEventListener("hashchange", () => show(stepOf()));
  show(stepOf());

  document.querySelectorAll("button.add").forEach((button) => {
    button.addEventListener("click", () => {
      cart.push({ name: button.dataset.name, price: Number(button.dataset.price) });
      $("#cart-count").textContent = String(cart.length);
      const total = cart.reduce((sum, item) => sum + item.price, 0);
      $("#cart-total").textContent = "€" + total.toFixed(2);
    });
  });
  $("#checkout").addEventListener("submit", (ev) => {
    ev.preventDefault();
    history.pushState({}, "", "#/payment");
    show("payment");
  });
  $("#pay").addEventListener("click", () => {
    $("#pay-result").textContent = "Contacting the payment provider…";
    fetch("/demo/api/fail?order=" + Date.now()).then((res) => {
      $("#pay-result").textContent = "Payment failed (HTTP " + res.status + "). Try again later.";
    });
  });

  // --- failures, each from a realistic-looking code path ---
  function applyCoupon(code) {
    return code.trim().toUpperCase(); // TypeError when there is no coupon
  }
  async function loadShippingRates() {
    throw new Error("Shipping rates service timed out after 8000 ms");
  }
  const failures = {
    error: () => setTimeout(() => applyCoupon(null)),
    rejection: () => loadShippingRates(),
    console: () => console.error("Cart total mismatch", { expected: 42.5, got: 0, items: cart }),
    fetch: () => fetch("/demo/api/fail?coupon=BEANS10"),
    xhr: () => {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/demo/api/fail?cart=" + cart.length);
      xhr.send();
    },
    network: () => {
      const xhr = new XMLHttpRequest();
      xhr.open("GET", "http://localhost:1/inventory");
      xhr.send();
    },
    capture: () => {
      try {
        JSON.parse("{'saved cart': broken}");
      } catch (err) {
        retrospec.captureException(err, { tags: { feature: "saved-cart" }, cartSize: cart.length });
      }
    },
  };
  document.querySelectorAll("[data-fail]").forEach((button) => {
    button.addEventListener("click", () => {
      failures[button.dataset.fail]();
      say(button.textContent + " caused.");
    });
  });
})();

// Outfitters shop: wires the views to the navigation and the router.
import { cart } from "./cart.js";
import { renderCatalog } from "./catalog.js";
import { renderOrders, renderSummary } from "./orders.js";
import { navigate, route } from "./router.js";
import { ORDERS } from "./data.js";

const view = document.getElementById("view");

async function showCheckout() {
  const { renderCheckout } = await import("./checkout.js");
  renderCheckout(view, () => cart);
}

route("/", () => renderCatalog(view));
route("/catalog", () => renderCatalog(view));
route("/orders", () => renderOrders(view));
route("/orders/:id", (id) => {
  renderOrders(view);
  const order = ORDERS.find((o) => String(o.id) === id);
  if (order) renderSummary(order);
});
route("/checkout", () => showCheckout());

document.getElementById("nav-catalog").addEventListener("click", () => navigate("/catalog"));
document.getElementById("nav-orders").addEventListener("click", () => navigate("/orders"));
document.getElementById("nav-checkout").addEventListener("click", () => navigate("/checkout"));
document.getElementById("goto-btn").addEventListener("click", () =>
  navigate(document.getElementById("goto").value.trim()));
window.addEventListener("popstate", () => navigate(location.pathname, { push: false }));

navigate("/", { push: false });

// The order history view: summaries, buy again, refresh from the server, export.
import dayjs from "dayjs";
import { addToCart } from "./cart.js";
import { ORDERS, USERS } from "./data.js";
import { el, toast } from "./ui.js";

export function renderSummary(order) {
  const who = order.customer ? order.customer.name : "Guest";
  const where = order.shipping.address ? order.shipping.address.city : order.shipping.store;
  const when = dayjs(order.placed).format("D MMM YYYY");
  document.getElementById("summary").textContent = `Order ${order.id} for ${who}, ${when}, to ${where}`;
}

export async function refreshOrder(id) {
  const res = await fetch(`/api/orders/${id}`);
  if (!res.ok) throw new Error(`Order ${id} could not be loaded (HTTP ${res.status})`);
  return res.json();
}

export function requestExport(user) {
  // The export service's client rejects with its JSON error body, as it came.
  return new Promise((resolve, reject) => {
    setTimeout(() => reject({ code: "E_QUOTA", user, message: `Export quota exceeded for ${user}` }), 5);
  });
}

export function renderOrders(view) {
  const items = ORDERS.map((order) =>
    el("li", { id: `order-${order.id}` },
      `#${order.id} `,
      el("button", { class: "view", onClick: () => renderSummary(order) }, "View"),
      el("button", { class: "buy-again", onClick: () => order.items.forEach((i) => addToCart(i.sku)) }, "Buy again"),
      el("button", { class: "refresh", onClick: () => refreshOrder(order.id).catch((e) => toast(e.message)) }, "Refresh")));
  view.replaceChildren(
    el("ul", { id: "orders" }, ...items),
    el("div", { id: "summary", class: "panel" }),
    el("div", { class: "panel" },
      el("select", { id: "export-user" }, ...USERS.map((u) => el("option", { value: u }, u))),
      el("button", { id: "export", onClick: () => requestExport(document.getElementById("export-user").value).catch((e) => toast(e.message)) }, "Export orders")),
  );
}

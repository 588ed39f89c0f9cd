// The catalog view: sortable product table, product details, coupons, quick add.
import { sortBy } from "lodash-es";
import { addToCart } from "./cart.js";
import { COUPONS, PRODUCTS } from "./data.js";
import { el, money, toast } from "./ui.js";

let order = PRODUCTS;

export function sortProducts(field) {
  order = sortBy(PRODUCTS, (p) => (p.stats ? p.stats[field] : 0));
  return order;
}

export function discountLabel(product) {
  return product.discount ? `-${product.discount.percent}%` : "";
}

export class CouponError extends Error {
  constructor(message) {
    super(message);
    this.name = "CouponError";
  }
}

export function applyCoupon(code) {
  const percent = COUPONS[code.trim().toUpperCase()];
  if (percent === undefined) {
    toast(`That coupon is not valid.`);
    return 0;
  }
  toast(`Coupon applied: ${percent}% off`);
  return percent;
}

export function locate(sku) {
  const row = document.querySelector(`#sku-${sku} .qty`);
  if (!row) {
    toast("No such product on this page.");
    return null;
  }
  row.scrollIntoView();
  return row;
}

function showDetails(product) {
  const panel = document.getElementById("details");
  panel.textContent = `${product.name}: ${money(product.price)} ${discountLabel(product)}`;
}

export function renderCatalog(view) {
  const header = el("tr", {},
    el("th", {}, "Product"),
    ...["price", "rating", "stock"].map((field) =>
      el("th", {}, el("button", { "data-field": field, onClick: () => { sortProducts(field); renderCatalog(view); } }, field))),
    el("th", {}, ""));
  const rows = order.map((p) =>
    el("tr", { id: `sku-${p.sku}` },
      el("td", { class: "name" }, p.name),
      el("td", { class: "price" }, money(p.price)),
      el("td", { class: "rating" }, p.stats ? String(p.stats.rating) : "–"),
      el("td", { class: "qty" }, p.stats ? String(p.stats.stock) : "–"),
      el("td", {},
        el("button", { class: "add", onClick: () => addToCart(p.sku) }, "Add"),
        el("button", { class: "details", onClick: () => showDetails(p) }, "Details"))));
  view.replaceChildren(
    el("table", { id: "products" }, header, ...rows),
    el("div", { id: "details", class: "panel" }),
    el("div", { class: "panel" },
      el("input", { id: "coupon", placeholder: "Coupon code" }),
      el("button", { id: "apply-coupon", onClick: () => applyCoupon(document.getElementById("coupon").value) }, "Apply"),
      el("input", { id: "locate", placeholder: "SKU" }),
      el("button", { id: "locate-btn", onClick: () => locate(document.getElementById("locate").value) }, "Locate"),
      el("input", { id: "quick-add", placeholder: "Quick add by SKU",
        onKeydown: (e) => { if (e.key === "Enter") addToCart(e.target.value.trim()); } })),
  );
}

// The checkout view, loaded on demand (its own chunk): validation with zod, dates with date-fns.
import { format, isValid, parseISO } from "date-fns";
import { sumBy } from "lodash-es";
import * as z from "zod";
import { el } from "./ui.js";

const OrderForm = z.object({
  email: z.string().email(),
  zip: z.string().min(4).max(10),
});

function message(text) {
  document.getElementById("checkout-msg").textContent = text;
}

export function placeOrder(form) {
  const result = OrderForm.safeParse(form);
  if (!result.success) {
    message("Please check: " + result.error.issues.map((i) => i.path.join(".")).join(", "));
    return null;
  }
  message("Order placed");
  return result.data;
}

export function deliveryLabel(value) {
  const date = parseISO(value);
  if (!isValid(date)) return "Pick a date like 2024-06-01";
  return "Delivery on " + format(date, "PPP");
}

export function estimateShipping(items) {
  const total = sumBy(items, (i) => i.price * i.qty);
  return total > 100 ? 0 : 4.9 + total * 0.01;
}

export function renderCheckout(view, cart) {
  const value = (id) => document.getElementById(id).value;
  view.replaceChildren(
    el("div", { class: "panel" },
      el("input", { id: "email", placeholder: "Email" }),
      el("input", { id: "zip", placeholder: "Postcode" }),
      el("input", { id: "delivery", placeholder: "Delivery date (YYYY-MM-DD)" }),
      el("button", { id: "place-order", onClick: () => placeOrder({ email: value("email"), zip: value("zip") }) }, "Place order"),
      el("button", { id: "delivery-btn", onClick: () => message(deliveryLabel(value("delivery"))) }, "Check date"),
      el("button", { id: "estimate", onClick: () => message("Shipping: " + estimateShipping(cart().items).toFixed(2)) }, "Estimate shipping"),
      el("p", { id: "checkout-msg" })),
  );
}

// The cart: immutable updates with immer, saved to the server after every change.
import { produce } from "immer";
import { find } from "lodash-es";
import { PRODUCTS } from "./data.js";
import { toast } from "./ui.js";

const cartId = "c" + Math.random().toString(36).slice(2, 10);
export let cart = { id: cartId, items: [] };

function saveCart(item) {
  return fetch(`/api/carts/${cartId}/items`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(item),
  }).then((res) => {
    if (!res.ok) toast("Your cart could not be saved; it is kept on this device.");
  }, () => toast("You are offline; your cart is kept on this device."));
}

export function addToCart(sku) {
  const product = find(PRODUCTS, { sku });
  const variant = product.variants ? product.variants[0] : null;
  const item = { sku, name: product.name, price: product.price, variant, qty: 1 };
  cart = produce(cart, (draft) => {
    draft.items.push(item);
  });
  document.getElementById("cart-count").textContent = "Cart: " + cart.items.length;
  return saveCart(item);
}

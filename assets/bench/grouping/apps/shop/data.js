// The shop's catalog and a customer's order history (what the API's first page load returns).
export const PRODUCTS = [
  { sku: "88123", name: "Trail running shoes", price: 89.9, stats: { price: 89.9, rating: 4.6, stock: 12 },
    discount: { percent: 10 }, variants: [{ size: "42" }, { size: "43" }] },
  { sku: "51007", name: "Merino socks (3 pack)", price: 24.5, stats: { price: 24.5, rating: 4.8, stock: 140 },
    discount: null, variants: [{ size: "M" }, { size: "L" }] },
  { sku: "30211", name: "Rain jacket", price: 149, stats: { price: 149, rating: 4.1, stock: 3 },
    variants: [{ size: "L" }] },
  { sku: "77450", name: "Headlamp 400 lm", price: 35, stats: { price: 35, rating: 4.4, stock: 58 },
    discount: { percent: 5 }, variants: [{ colour: "black" }] },
  // Added by the marketing team's import: no stats, no variants, no discount field.
  { sku: "90001", name: "Gift card", price: 50 },
];

export const ORDERS = [
  { id: 1234, placed: "2024-03-02T10:15:00Z", customer: { name: "Ana Lima", email: "ana@example.com" },
    shipping: { method: "post", address: { city: "Porto", zip: "4000-322" } },
    items: [{ sku: "88123", qty: 1 }, { sku: "51007", qty: 2 }] },
  { id: 1301, placed: "2024-04-11T16:40:00Z", customer: { name: "Ana Lima", email: "ana@example.com" },
    shipping: { method: "pickup", store: "Lisbon Chiado" }, items: [{ sku: "90001", qty: 1 }] },
  { id: 1377, placed: "2024-05-20T08:05:00Z", customer: null,
    shipping: { method: "post", address: { city: "Braga", zip: "4700-001" } },
    items: [{ sku: "30211", qty: 1 }] },
];

export const COUPONS = { WELCOME10: 10, SPRING5: 5 };
export const USERS = ["ana.lima", "joao.pereira", "mei.tanaka"];

// A confidential order book for Consort. Orders live in a private (encrypted) map; a user sees its own orders
// and the aggregated book, never another user's orders. An incoming order trades at once against resting orders
// of the other side at an equal or better price (price-time priority), inside one transaction.

import * as ccfapp from "@microsoft/ccf-app";

type Side = "buy" | "sell";

interface Order {
  id: number;
  owner: string;
  side: Side;
  price: number;
  quantity: number;
  filled: number;
}

interface PlaceOrder {
  side: Side;
  price: number;
  quantity: number;
}

const orders = ccfapp.typedKv("orders", ccfapp.uint32, ccfapp.json<Order>());
const meta = ccfapp.typedKv("orderbook_meta", ccfapp.string, ccfapp.uint32);

function callerId(request: ccfapp.Request): string {
  const caller = request.caller as unknown as { id?: string };
  return caller.id ?? "";
}

function bad(message: string): ccfapp.Response {
  return { statusCode: 400, body: { error: { code: "InvalidInput", message } } };
}

function isPositiveInteger(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v > 0 && v <= 1e12;
}

export function placeOrder(request: ccfapp.Request<PlaceOrder>): ccfapp.Response {
  let body: PlaceOrder;
  try {
    body = request.body.json();
  } catch (e) {
    return bad("body must be JSON");
  }
  if (body.side !== "buy" && body.side !== "sell") return bad("side must be buy or sell");
  if (!isPositiveInteger(body.price) || !isPositiveInteger(body.quantity)) {
    return bad("price and quantity must be positive integers");
  }
  const id = (meta.get("next_id") ?? 0) + 1;
  meta.set("next_id", id);
  const order: Order = { id, owner: callerId(request), side: body.side, ...pick(body), filled: 0 };

  // Resting orders of the other side that cross, best price first, then oldest first.
  const crossing: Order[] = [];
  orders.forEach((o) => {
    const open = o.quantity - o.filled;
    if (open <= 0 || o.side === order.side || o.owner === order.owner) return;
    if (order.side === "buy" ? o.price <= order.price : o.price >= order.price) crossing.push(o);
  });
  crossing.sort((a, b) => (order.side === "buy" ? a.price - b.price : b.price - a.price) || a.id - b.id);
  const trades: { price: number; quantity: number }[] = [];
  for (const o of crossing) {
    const want = order.quantity - order.filled;
    if (want === 0) break;
    const q = Math.min(want, o.quantity - o.filled);
    o.filled += q;
    order.filled += q;
    orders.set(o.id, o);
    trades.push({ price: o.price, quantity: q });
  }
  orders.set(id, order);
  return { statusCode: 201, body: { id, filled: order.filled, trades } };
}

function pick(body: PlaceOrder): { price: number; quantity: number } {
  return { price: body.price, quantity: body.quantity };
}

export function getOrder(request: ccfapp.Request): ccfapp.Response {
  const id = Number(request.params.id);
  const order = Number.isInteger(id) && id > 0 ? orders.get(id) : undefined;
  // Another user's order is reported exactly like a missing one: its existence is not disclosed.
  if (order === undefined || order.owner !== callerId(request)) {
    return { statusCode: 404, body: { error: { code: "ResourceNotFound", message: `No order ${request.params.id}` } } };
  }
  return { body: order };
}

export function getBook(_request: ccfapp.Request): ccfapp.Response {
  const levels: Record<Side, Record<string, number>> = { buy: {}, sell: {} };
  orders.forEach((o) => {
    const open = o.quantity - o.filled;
    if (open > 0) levels[o.side][String(o.price)] = (levels[o.side][String(o.price)] ?? 0) + open;
  });
  return { body: levels };
}

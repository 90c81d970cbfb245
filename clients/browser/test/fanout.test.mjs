// The rules of fanout.js that need no server: backoff, duplicates by id, per-key order, rate_limited waits,
// the topics a forbidden_topic refusal leaves out.
// Run by tests/integration/test_browser_client.py with `node --test`.
import assert from "node:assert/strict";
import test from "node:test";

import { Backoff, RecentIds, Reorderer, rateLimitedWait, reconnectAfterMs, refusedTopics, shared, ticketUrl } from "../fanout.js";

const ev = (id, key, seq) => ({ id, type: "chat.message", key, seq, payload: {} });
const ids = (events) => events.map((e) => e.id);

test("backoff delays stay within a doubling bound, capped, and reset after a connect", () => {
  const backoff = new Backoff({ baseMs: 500, capMs: 4000, random: () => 0.999 });
  const delays = Array.from({ length: 6 }, () => backoff.next());
  assert.deepEqual(delays.map((d) => Math.round(d)), [500, 999, 1998, 3996, 3996, 3996]);
  backoff.reset();
  assert.equal(backoff.bound(), 500);
});

test("backoff is full jitter: a draw of 0 waits nothing", () => {
  const backoff = new Backoff({ random: () => 0 });
  assert.equal(backoff.next(), 0);
  assert.equal(backoff.attempt, 1);
});

test("recent ids drop a repeated id and forget the oldest past capacity", () => {
  const recent = new RecentIds(2);
  assert.equal(recent.add("a"), true);
  assert.equal(recent.add("a"), false);
  recent.add("b");
  recent.add("c");
  assert.equal(recent.has("a"), false);
  assert.equal(recent.size, 2);
  assert.throws(() => new RecentIds(0), RangeError);
});

test("events of a key are handed on in seq order; an early one waits for the gap", () => {
  const reorder = new Reorderer();
  assert.deepEqual(ids(reorder.push(ev("e1", "user:u1", 1))), ["e1"]);
  assert.deepEqual(ids(reorder.push(ev("e3", "user:u1", 3))), []);
  assert.deepEqual(ids(reorder.push(ev("e4", "user:u1", 4))), []);
  assert.deepEqual(ids(reorder.push(ev("e2", "user:u1", 2))), ["e2", "e3", "e4"]);
  assert.deepEqual(ids(reorder.push(ev("e2bis", "user:u1", 2))), []);
  assert.equal(reorder.positions.get("user:u1"), 4);
});

test("events without key or seq pass straight through", () => {
  const reorder = new Reorderer();
  assert.deepEqual(ids(reorder.push({ id: "n1", type: "notification.new", payload: {} })), ["n1"]);
  assert.deepEqual(ids(reorder.push({ id: "t1", type: "chat.typing.started", key: "chat:c9" })), ["t1"]);
  assert.equal(reorder.positions.size, 0);
});

test("a gap becomes overdue after holdMs; skipping it hands on what was held", () => {
  let now = 0;
  const reorder = new Reorderer({ holdMs: 2000, now: () => now });
  reorder.push(ev("e1", "k:1", 1));
  reorder.push(ev("e5", "k:1", 5));
  now = 1999;
  assert.deepEqual(reorder.overdue(), []);
  now = 2000;
  assert.deepEqual(reorder.overdue(), ["k:1"]);
  assert.deepEqual(ids(reorder.skip("k:1")), ["e5"]);
  assert.deepEqual(reorder.overdue(), []);
  assert.equal(reorder.positions.get("k:1"), 5);
});

test("a resync position drops held events up to it and hands on those after it", () => {
  const reorder = new Reorderer();
  reorder.push(ev("e1", "k:1", 1));
  reorder.push(ev("e3", "k:1", 3));
  reorder.push(ev("e6", "k:1", 6));
  assert.deepEqual(ids(reorder.expect("k:1", 5)), ["e6"]);
  assert.deepEqual(ids(reorder.push(ev("e5", "k:1", 5))), []);
});

test("a live counter's newer value is handed on at once, though its seq skipped", () => {
  const reorder = new Reorderer();
  const counter = (id, seq) => ({ ...ev(id, "event:42", seq), type: "event.rsvp.updated" });
  assert.deepEqual(ids(reorder.push(counter("r1", 1))), ["r1"]);
  assert.deepEqual(ids(reorder.push(counter("r5", 5))), ["r5"]);
  assert.deepEqual(ids(reorder.push(counter("r3", 3))), []);
  assert.deepEqual(reorder.overdue(), []);
  assert.equal(reorder.positions.get("event:42"), 5);
});

test("more held events than maxHeld give the gap up at once", () => {
  const reorder = new Reorderer({ maxHeld: 2 });
  reorder.push(ev("e1", "k:1", 1));
  reorder.push(ev("e3", "k:1", 3));
  reorder.push(ev("e4", "k:1", 4));
  assert.deepEqual(ids(reorder.push(ev("e5", "k:1", 5))), ["e3", "e4", "e5"]);
});

test("a ticket URL carries a fresh, encoded ticket on every call", async () => {
  let n = 0;
  const build = ticketUrl("ws://h/local", async () => `fot_a+${++n}`);
  assert.equal(await build(), "ws://h/local?ticket=fot_a%2B1");
  assert.equal(await build(), "ws://h/local?ticket=fot_a%2B2");
});

test("forgetting a key drops its position and what it held, so a resume no longer names it", () => {
  const reorder = new Reorderer({ holdMs: 0 });
  reorder.push(ev("o1", "organization:7", 1));
  reorder.push(ev("o3", "organization:7", 3));
  reorder.push(ev("c1", "chat:c9", 1));
  reorder.forget("organization:7");
  assert.deepEqual([...reorder.positions.keys()], ["chat:c9"]);
  assert.deepEqual(reorder.overdue(), []);
  assert.deepEqual(ids(reorder.push(ev("o5", "organization:7", 5))), ["o5"]);
});

test("a rate_limited refusal asks for its windowS; another answer or an insane window for no wait", () => {
  const refusal = (payload) => ({ v: 1, type: "system.error", payload: { code: "rate_limited", ...payload } });
  assert.deepEqual([10, 0.5, 60].map((windowS) => rateLimitedWait(refusal({ windowS }))), [10, 0.5, 60]);
  const others = [
    { v: 1, type: "subscribe.ok", payload: { topics: [] } },
    { v: 1, type: "system.error", payload: { code: "forbidden_topic", windowS: 10 } },
    { v: 1, type: "system.error" },
    refusal({}),
    refusal({ windowS: "10" }),
    refusal({ windowS: 0 }),
    refusal({ windowS: -1 }),
    refusal({ windowS: 61 }),
    refusal({ windowS: Infinity }),
  ];
  assert.deepEqual(others.map(rateLimitedWait), others.map(() => null));
});

test("a forbidden_topic refusal leaves out every asked topic it names, and nothing else", () => {
  const asked = ["organization:1", "organization:2", "event:3"];
  const forbidden = (payload) => ({ v: 1, type: "system.error", payload: { code: "forbidden_topic", ...payload } });
  const cases = [
    [forbidden({ topic: "organization:1", topics: ["organization:1", "organization:2"] }), ["organization:1", "organization:2"]],
    [forbidden({ topic: "organization:2" }), ["organization:2"]], // a server before `topics`
    [forbidden({ topic: "organization:1", topics: ["organization:1", "user:other", 7, null] }), ["organization:1"]],
    [forbidden({ topic: "organization:1", topics: "organization:2" }), ["organization:1"]],
    [forbidden({ topic: "user:other" }), []],
    [forbidden({ topics: [] }), []],
    [{ v: 1, type: "system.error", payload: { code: "too_many_topics", topic: "event:3" } }, []],
    [{ v: 1, type: "subscribe.ok", payload: { code: "forbidden_topic", topic: "event:3" } }, []],
    [{ v: 1, type: "system.error", payload: "forbidden_topic" }, []],
  ];
  for (const [answer, refused] of cases) assert.deepEqual([...refusedTopics(answer, asked)].sort(), refused.sort());
});

test("a system.reconnect is followed within its afterMs, at most 5 minutes; an upgrade ask is not", () => {
  const ask = (payload) => ({ v: 1, id: "evt_1", type: "system.reconnect", payload });
  assert.equal(reconnectAfterMs(ask({ reason: "maintenance", afterMs: 5000 })), 5000);
  assert.equal(reconnectAfterMs(ask({ afterMs: 0 })), 0);
  for (const afterMs of [undefined, "5000", -1, Number.NaN]) assert.equal(reconnectAfterMs(ask({ afterMs })), 1000);
  assert.equal(reconnectAfterMs(ask({ afterMs: 1e12 })), 300_000);
  assert.equal(reconnectAfterMs(ask({ reason: "upgrade", eventType: "chat.message", payloadVersion: 2 })), null);
  assert.equal(reconnectAfterMs({ type: "notification.new", payload: { afterMs: 0 } }), null);
});

test("the tab's shared client is one until it is closed; the next call after a sign-out makes a new one", () => {
  const pending = () => new Promise(() => {}); // a URL never built: no socket is opened
  const first = shared({ url: pending, document: null });
  assert.equal(shared({ url: pending, document: null }), first);
  first.close();
  const second = shared({ url: pending, document: null });
  assert.notEqual(second, first);
  assert.equal(second.running, true);
  second.close();
});

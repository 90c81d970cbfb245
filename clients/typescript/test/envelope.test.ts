/** The v1 body as the Python publisher writes it, the checks before sending, and the one-event publisher. */

import assert from "node:assert/strict";
import { after, before, beforeEach, describe, test } from "node:test";

import { buildEvent, InvalidEvent, MAX_FRAME_BYTES, Publisher, revocation, type UntypedPayloads } from "../src/index.js";

import { endpoint, expectDelivered, expectSameBody, queueUrl, region, userId } from "./support/env.js";
import { SqsProxy } from "./support/proxy.js";

const ULID_ID = /^evt_[0-9A-HJKMNP-TV-Z]{26}$/;
const SENT_AT = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

describe("buildEvent", () => {
  test("builds the v1 body in the Python publisher's shape, with an evt_ ULID id and a UTC sentAt", () => {
    const before = Date.now();
    const event = buildEvent("notification.new", {
      userIds: ["u1", "u2"],
      payload: { notificationId: "n1", title: "hé", n: 1, none: null },
      meta: { seq: 7, traceId: "t-1", tenant: "acme" },
    });
    const doc = JSON.parse(event.json) as Record<string, unknown>;
    assert.deepEqual(Object.keys(doc), ["v", "id", "type", "payload", "sentAt", "target", "meta"]);
    assert.match(event.body.id, ULID_ID);
    assert.match(event.body.sentAt, SENT_AT);
    assert.ok(Math.abs(Date.parse(event.body.sentAt) - before) < 5_000);
    assert.deepEqual(doc.target, {
      userIds: ["u1", "u2"],
      topics: [],
      broadcast: false,
      excludeConnectionIds: [],
      connectionIds: [],
    });
    assert.deepEqual(doc.meta, { source: null, traceId: "t-1", orderingKey: null, seq: 7, expiresAt: null, tenant: "acme" });
    assert.equal(Buffer.byteLength(event.json), event.bytes);
    assert.deepEqual(JSON.parse(event.json), event.body);
    expectSameBody(event.json);
    expectSameBody(buildEvent("system.broadcast", { broadcast: true, excludeConnectionIds: ["c1"], payload: { broadcastId: "b1" } }).json);
  });

  test("builds a revocation for users alone, in the Python publisher's shape", () => {
    const event = revocation(["u1", "u2"], ["organization:o1", "conversation:c9"]);
    assert.equal(event.body.type, "system.access.revoked");
    assert.deepEqual(event.body.payload, { topics: ["organization:o1", "conversation:c9"] });
    assert.deepEqual(event.body.target.userIds, ["u1", "u2"]);
    assert.equal(event.body.meta.payloadVersion, 1);
    expectSameBody(event.json);
  });

  test("gives every event its own id, and keeps an id the caller chose", () => {
    const ids = new Set(Array.from({ length: 1000 }, () => buildEvent("chat.message", { topics: ["conversation:c9"] }).body.id));
    assert.equal(ids.size, 1000);
    assert.equal(buildEvent("chat.message", { topics: ["conversation:c9"], id: "order-42:v1" }).body.id, "order-42:v1");
  });
});

describe("Publisher", () => {
  let proxy: SqsProxy;
  // Untyped: these cases check what the run-time checks refuse, which the compiler would refuse first.
  let publisher: Publisher<UntypedPayloads>;
  before(async () => {
    proxy = await SqsProxy.start(endpoint);
    publisher = new Publisher<UntypedPayloads>({ queueUrl, endpoint: proxy.url, region });
  });
  beforeEach(() => proxy.reset());
  after(async () => {
    publisher.close();
    await proxy.close();
  });

  test("refuses bad input with the worker's reason code, and sends nothing", async () => {
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const cases: [string, () => Promise<string>, InvalidEvent["reason"]][] = [
      ["capitals in the type", () => publisher.publish("Notification.New", { userIds: [userId] }), "schema"],
      ["a type without a name", () => publisher.publish("notification", { userIds: [userId] }), "schema"],
      ["an unknown domain", () => publisher.publish("billing.paid", { userIds: [userId] }), "unknown_domain"],
      ["no target", () => publisher.publish("notification.new", { payload: {} }), "empty_target"],
      ["a user twice", () => publisher.publish("notification.new", { userIds: ["u1", "u1"] }), "duplicate_target"],
      ["an empty topic", () => publisher.publish("notification.new", { topics: [""] }), "schema"],
      ["an array payload", () => publisher.publish("notification.new", { userIds: [userId], payload: [1] }), "schema"],
      ["a BigInt", () => publisher.publish("notification.new", { userIds: [userId], payload: { n: 1n } }), "schema"],
      ["a cycle", () => publisher.publish("notification.new", { userIds: [userId], payload: cyclic }), "schema"],
      ["NaN in the payload", () => publisher.publish("notification.new", { userIds: [userId], payload: { n: NaN } }), "schema"],
      ["Infinity in a list", () => publisher.publish("notification.new", { userIds: [userId], payload: { n: [null, -Infinity] } }), "schema"],
      ["NaN in meta", () => publisher.publish("notification.new", { userIds: [userId], meta: { score: NaN } }), "schema"],
      ["a negative seq", () => publisher.publish("chat.message", { userIds: [userId], meta: { seq: -1 } }), "schema"],
      ["a bad expiresAt", () => publisher.publish("chat.message", { userIds: [userId], meta: { expiresAt: "soon" } }), "schema"],
      ["a bad id", () => publisher.publish("notification.new", { userIds: [userId], id: "has space" }), "schema"],
      ["a revocation for a topic", () => publisher.publish("system.access.revoked", { topics: ["organization:o1"], payload: { topics: ["organization:o1"] } }), "bad_target"],
      ["a revocation for everyone", () => publisher.publish("system.access.revoked", { broadcast: true, payload: { topics: ["organization:o1"] } }), "bad_target"],
      ["a revocation sparing a tab", () => publisher.publish("system.access.revoked", { userIds: [userId], excludeConnectionIds: ["c1"], payload: { topics: ["organization:o1"] } }), "bad_target"],
      ["revoked topics not a list", () => publisher.publish("system.access.revoked", { userIds: [userId], payload: { topics: "organization:o1" } }), "payload_schema"],
      ["no revoked topic", () => publisher.revokeTopics([userId], []), "payload_schema"],
      ["101 revoked topics", () => publisher.revokeTopics([userId], Array.from({ length: 101 }, (_, i) => `organization:o${i}`)), "payload_schema"],
      ["a revoked user: topic", () => publisher.revokeTopics([userId], ["organization:o1", `user:${userId}`]), "payload_schema"],
      [
        "a frame over 128 KiB",
        () => publisher.publish("notification.new", { userIds: [userId], payload: { text: "x".repeat(MAX_FRAME_BYTES) } }),
        "too_large",
      ],
    ];
    for (const [what, publish, reason] of cases) {
      await assert.rejects(publish, (error: unknown) => error instanceof InvalidEvent && error.reason === reason, what);
    }
    assert.deepEqual(proxy.calls, []);
  });

  test("revokeTopics sends one system.access.revoked for the users, which reaches their socket", async () => {
    const id = await publisher.revokeTopics([userId], ["organization:ts-revoked"]);
    const [call] = proxy.calls;
    assert.deepEqual([call?.action, call?.eventIds, call?.status], ["SendMessage", [id], 200]);
    expectDelivered(id, "system.access.revoked", { topics: ["organization:ts-revoked"] });
  });

  test("publish sends one event at once with SendMessage and resolves with its id", async () => {
    const payload = { notificationId: "n-single", title: "from Node", kind: "single" };
    const id = await publisher.publish("notification.new", { userIds: [userId], payload });
    assert.match(id, ULID_ID);
    const [call] = proxy.calls;
    assert.deepEqual([call?.action, call?.eventIds, call?.status], ["SendMessage", [id], 200]);
    expectDelivered(id, "notification.new", payload);
  });
});

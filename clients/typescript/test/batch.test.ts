/** The batch publisher against the local SQS, through a recording proxy that injects SQS's faults. */

import assert from "node:assert/strict";
import { after, before, beforeEach, test } from "node:test";

import {
  BatchPublisher,
  type BatchOptions,
  BufferFullError,
  newEventId,
  PublisherClosedError,
  type PublishFailure,
} from "../src/index.js";

import { endpoint, expectDelivered, expectUndelivered, queueUrl, region, userId, waitFor } from "./support/env.js";
import { SqsProxy } from "./support/proxy.js";

let proxy: SqsProxy;
before(async () => {
  proxy = await SqsProxy.start(endpoint);
});
beforeEach(() => proxy.reset());
after(() => proxy.close());

function open(options: Partial<BatchOptions> = {}): BatchPublisher {
  return new BatchPublisher({ queueUrl, endpoint: proxy.url, region, flushOnExit: false, ...options });
}

/** Publish `count` events to the test user; returns their ids, each expected at the WebSocket client. */
async function publishMany(publisher: BatchPublisher, count: number, label: string, size = 0): Promise<string[]> {
  const ids: string[] = [];
  for (let n = 0; n < count; n += 1) {
    const payload = { notificationId: `${label}-${n}`, label, n, pad: "p".repeat(size) };
    const id = await publisher.publish("notification.new", { userIds: [userId], payload, id: newEventId() });
    expectDelivered(id, "notification.new", payload);
    ids.push(id);
  }
  return ids;
}

/** A valid notification.new payload (the worker checks catalogued payloads against their model). */
const note = (notificationId: string): { notificationId: string } => ({ notificationId });

const sentIds = (): string[] =>
  proxy.callsOf("SendMessageBatch").flatMap((call) => call.eventIds.filter((id) => !call.failedIds.includes(id)));

test("a full batch of 10 goes at once, without waiting for the linger", async () => {
  const publisher = open({ lingerMs: 60_000 });
  const ids = await publishMany(publisher, 10, "full");
  await waitFor("the full batch is sent", () => publisher.stats().sent === 10);
  assert.deepEqual(proxy.callsOf("SendMessageBatch").map((call) => call.eventIds), [ids]);
  await publisher.close();
});

test("a partial batch waits for the linger, then goes", async () => {
  const publisher = open({ lingerMs: 300 });
  const start = performance.now();
  const ids = await publishMany(publisher, 3, "linger");
  await waitFor("the partial batch is sent", () => publisher.stats().sent === 3);
  const calls = proxy.callsOf("SendMessageBatch");
  assert.deepEqual(calls.map((call) => call.eventIds), [ids]);
  assert.ok((calls[0]?.at ?? 0) - start >= 300, "sent only once the linger was over");
  await publisher.close();
});

test("close() sends everything buffered, at most 10 entries and 256 KiB per call", async () => {
  const publisher = open({ lingerMs: 60_000 });
  const ids = [...(await publishMany(publisher, 13, "close")), ...(await publishMany(publisher, 4, "close-big", 100_000))];
  const stats = await publisher.close();
  assert.deepEqual([stats.sent, stats.failed, stats.buffered, stats.inFlight], [17, 0, 0, 0]);
  const calls = proxy.callsOf("SendMessageBatch");
  assert.deepEqual(sentIds().sort(), [...ids].sort());
  for (const call of calls) {
    assert.ok(call.eventIds.length <= 10 && call.bodyBytes <= 256 * 1024, JSON.stringify(call));
  }
  assert.ok(calls.length >= 3, "four 100 KB events need at least two calls of their own");
  await assert.rejects(publisher.publish("notification.new", { userIds: [userId], payload: note("closed") }), PublisherClosedError);
});

test("an entry that fails within a batch is retried alone, and the rest are not sent twice", async () => {
  const publisher = open({ lingerMs: 60_000, retryDelayMs: 20 });
  const ids = [newEventId(), newEventId(), newEventId()];
  proxy.failEntry(ids[1] as string, 1);
  for (const [n, id] of ids.entries()) {
    const payload = { notificationId: `retry-${n}`, label: "retry", n };
    await publisher.publish("notification.new", { userIds: [userId], payload, id });
    expectDelivered(id, "notification.new", payload);
  }
  const stats = await publisher.close();
  assert.deepEqual([stats.sent, stats.failed, stats.retried, stats.batches], [3, 0, 1, 2]);
  const calls = proxy.callsOf("SendMessageBatch");
  assert.deepEqual(calls.map((call) => [call.eventIds, call.failedIds]), [[ids, [ids[1]]], [[ids[1]], []]]);
});

test("a call that fails whole is retried, and its events all go", async () => {
  // The SDK's own retries off, so the publisher's are the ones shown.
  const publisher = open({ lingerMs: 60_000, retryDelayMs: 20, clientConfig: { maxAttempts: 1 } });
  proxy.failCalls(2);
  const ids = await publishMany(publisher, 4, "outage");
  const stats = await publisher.close();
  assert.deepEqual([stats.sent, stats.failed, stats.batches], [4, 0, 3]);
  assert.deepEqual(proxy.calls.map((call) => call.status), [503, 503, 200]);
  assert.deepEqual(sentIds(), ids);
});

test("an event that keeps failing goes to onFailure after maxAttempts; a sender fault at once", async () => {
  const failures: PublishFailure[] = [];
  const publisher = open({ lingerMs: 60_000, retryDelayMs: 10, maxAttempts: 3, onFailure: (f) => failures.push(f) });
  const [flaky, refused] = [newEventId(), newEventId()];
  proxy.failEntry(flaky, 100);
  proxy.failEntry(refused, 100, true);
  await publisher.publish("notification.new", { userIds: [userId], id: flaky, payload: note("flaky") });
  await publisher.publish("notification.new", { userIds: [userId], id: refused, payload: note("refused") });
  const [good] = await publishMany(publisher, 1, "beside-failures");
  const stats = await publisher.close();
  assert.deepEqual([stats.sent, stats.failed], [1, 2]);
  const seen = failures.map((f) => [f.id, f.code, f.attempts]).sort();
  assert.deepEqual(seen, [[flaky, "InternalError", 3], [refused, "InvalidParameterValue", 1]].sort());
  assert.deepEqual(sentIds(), [good]);
  expectUndelivered(flaky);
  expectUndelivered(refused);
});

test("close() with a timeout reports what SQS has not confirmed by then as CloseTimeout", async () => {
  const failures: PublishFailure[] = [];
  const publisher = open({ lingerMs: 60_000, onFailure: (f) => failures.push(f) });
  proxy.failCalls(1, 3_000); // the first call hangs past the timeout
  const ids = [newEventId(), newEventId()];
  for (const id of ids) await publisher.publish("notification.new", { userIds: [userId], id, payload: note(id) });
  const start = performance.now();
  const stats = await publisher.close({ timeoutMs: 200 });
  assert.ok(performance.now() - start < 2_500, "close() returned at its timeout, not when SQS answered");
  assert.deepEqual([stats.sent, stats.failed, stats.inFlight], [0, 2, 0]);
  assert.deepEqual(failures.map((f) => [f.id, f.code]), ids.map((id) => [id, "CloseTimeout"]));
  ids.forEach(expectUndelivered);
});

test("with the buffer full, publish waits at most maxBlockMs then throws; a freed slot lets a waiter in", async () => {
  const publisher = open({ lingerMs: 60_000, maxBufferedEvents: 2, maxBlockMs: 200 });
  const ids = await publishMany(publisher, 2, "bounded");
  const start = performance.now();
  await assert.rejects(publisher.publish("notification.new", { userIds: [userId], payload: note("full") }), BufferFullError);
  assert.ok(performance.now() - start >= 195, "waited for room first");
  assert.deepEqual(proxy.calls, []);

  const payload = { notificationId: "bounded-waiter", label: "bounded-waiter" };
  const waiting = publisher.publish("notification.new", { userIds: [userId], payload });
  await publisher.flush(); // sends the two, which frees the room the waiter takes
  const waiterId = await waiting;
  expectDelivered(waiterId, "notification.new", payload);
  const stats = await publisher.close();
  assert.deepEqual([stats.sent, stats.failed], [3, 0]);
  assert.deepEqual(sentIds(), [...ids, waiterId]);
});

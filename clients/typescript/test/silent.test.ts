/** An SQS endpoint that takes the connection and never answers: each call ends within `timeoutMs`. */

import assert from "node:assert/strict";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";

import { BatchPublisher, newEventId, Publisher, type PublishFailure } from "../src/index.js";

let server: net.Server;
const sockets = new Set<net.Socket>();
let endpoint = "";
before(async () => {
  server = net.createServer((socket) => {
    sockets.add(socket); // read the request, answer nothing: a frozen or half-open SQS
    socket.on("close", () => sockets.delete(socket));
    socket.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => {
  for (const socket of sockets) socket.destroy();
  server.close();
});

const options = () => ({
  queueUrl: `${endpoint}/123456789012/fanout-events`,
  endpoint,
  region: "us-east-1",
  timeoutMs: 300,
  clientConfig: { maxAttempts: 1, credentials: { accessKeyId: "test", secretAccessKey: "test" } },
});
const input = () => ({ userIds: ["u1"], payload: { notificationId: "n1" }, id: newEventId() });

test("a publish to an SQS that never answers fails within the call timeout instead of hanging", async () => {
  const publisher = new Publisher(options());
  const start = performance.now();
  await assert.rejects(publisher.publish("notification.new", input()), (error: Error) => error.name === "TimeoutError");
  assert.ok(performance.now() - start < 5_000, `took ${Math.round(performance.now() - start)} ms`);
  publisher.close();
});

test("a batch publisher's flush against an SQS that never answers ends, the event reported failed", async () => {
  const failures: PublishFailure[] = [];
  const publisher = new BatchPublisher({
    ...options(),
    flushOnExit: false,
    maxAttempts: 2,
    retryDelayMs: 10,
    onFailure: (failure) => failures.push(failure),
  });
  const id = await publisher.publish("notification.new", input());
  const start = performance.now();
  await publisher.flush();
  assert.ok(performance.now() - start < 5_000, `took ${Math.round(performance.now() - start)} ms`);
  assert.deepEqual(failures.map((f) => [f.id, f.code, f.attempts]), [[id, "TimeoutError", 2]]);
  await publisher.close();
});

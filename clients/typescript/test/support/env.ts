/**
 * Where the tests publish, from FANOUT_TS_* variables (set by tests/integration/test_typescript_publisher.py);
 * without them, the endpoints that `fanout dev` prints. What they publish goes to FANOUT_TS_RESULTS,
 * one JSON object a line, for the Python side to check at a real WebSocket client.
 */

import { appendFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

export const endpoint = process.env.FANOUT_TS_SQS_ENDPOINT ?? "http://127.0.0.1:9324";
export const region = process.env.FANOUT_TS_REGION ?? "us-east-1";
export const queueUrl = process.env.FANOUT_TS_QUEUE_URL ?? `${endpoint}/123456789012/fanout-events`;
export const userId = process.env.FANOUT_TS_USER_ID ?? "ts-user";
const resultsFile = process.env.FANOUT_TS_RESULTS;

/** An event the user's WebSocket client must receive once, with this type and payload. */
export function expectDelivered(id: string, type: string, payload: object): void {
  write({ kind: "delivered", id, type, payload });
}

/** An event the publisher reported failed: it must never reach the client. */
export function expectUndelivered(id: string): void {
  write({ kind: "undelivered", id });
}

/** A queue body built here, which Python's parser must read back to the same bytes. */
export function expectSameBody(json: string): void {
  write({ kind: "built", json });
}

function write(record: object): void {
  if (resultsFile !== undefined) appendFileSync(resultsFile, `${JSON.stringify(record)}\n`);
}

/** Poll `predicate` until it holds; fail with `what` after `timeoutMs`. */
export async function waitFor(what: string, predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await sleep(10);
  }
}

/** The batch publisher flushes when its process ends: on beforeExit, and on SIGTERM before exiting. */

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { after, before, beforeEach, test } from "node:test";

import { endpoint, expectDelivered, waitFor } from "./support/env.js";
import { SqsProxy } from "./support/proxy.js";

const CHILD = fileURLToPath(new URL("./support/exit-child.js", import.meta.url));

let proxy: SqsProxy;
before(async () => {
  proxy = await SqsProxy.start(endpoint);
});
beforeEach(() => proxy.reset());
after(() => proxy.close());

interface Child {
  lines: string[];
  ids: () => string[];
  exited: Promise<[number | null, NodeJS.Signals | null]>;
  kill: (signal: NodeJS.Signals) => void;
}

function run(mode: string): Child {
  const child = spawn(process.execPath, [CHILD, mode, proxy.url, `exit-${mode}`], { stdio: ["ignore", "pipe", "inherit"] });
  const lines: string[] = [];
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => lines.push(...chunk.split("\n").filter(Boolean)));
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  const ids = (): string[] => {
    const line = lines.find((l) => l.startsWith('{"ids"'));
    return line === undefined ? [] : (JSON.parse(line) as { ids: string[] }).ids;
  };
  return { lines, ids, exited, kill: (signal) => child.kill(signal) };
}

function sent(): string[] {
  return proxy.callsOf("SendMessageBatch").filter((call) => call.status === 200).flatMap((call) => call.eventIds);
}

function expectAll(ids: string[], mode: string): void {
  ids.forEach((id, n) => expectDelivered(id, "notification.new", { notificationId: `exit-${mode}-${n}`, label: `exit-${mode}`, n }));
}

test("events still buffered when the script ends are sent on beforeExit", async () => {
  const child = run("beforeExit");
  const [code] = await child.exited;
  assert.equal(code, 0);
  assert.equal(child.ids().length, 3);
  assert.deepEqual(sent(), child.ids(), "the 60 s linger was cut short by the exit");
  expectAll(child.ids(), "beforeExit");
});

test("SIGTERM flushes the buffer, then the process ends by the signal", async () => {
  const child = run("signal");
  await waitFor("the child buffered its events", () => child.ids().length === 3);
  assert.deepEqual(proxy.calls, []);
  child.kill("SIGTERM");
  const [code, signal] = await child.exited;
  assert.deepEqual([code, signal], [null, "SIGTERM"]);
  assert.deepEqual(sent(), child.ids());
  expectAll(child.ids(), "signal");
});

test("a service's own SIGTERM handler keeps the shutdown, and close() from it sends everything", async () => {
  const child = run("own-handler");
  await waitFor("the child buffered its events", () => child.ids().length === 3);
  child.kill("SIGTERM");
  const [code] = await child.exited;
  assert.equal(code, 0);
  assert.ok(child.lines.includes(JSON.stringify({ closedBy: "own-handler", sent: 3 })), child.lines.join("\n"));
  assert.deepEqual(sent(), child.ids());
  expectAll(child.ids(), "own-handler");
});

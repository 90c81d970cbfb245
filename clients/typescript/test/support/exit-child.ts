/**
 * A service process for the exit tests: buffers three events with a long linger, prints their ids as one
 * JSON line, then either ends its script (`beforeExit`), waits for a signal (`signal`), or waits for a
 * signal with a SIGTERM handler of its own that closes the publisher (`own-handler`).
 */

import { BatchPublisher } from "../../src/index.js";

import { queueUrl, region, userId } from "./env.js";

const [mode = "", endpoint = "", label = ""] = process.argv.slice(2);
const publisher = new BatchPublisher({ queueUrl, endpoint, region, lingerMs: 60_000 });
const ids: string[] = [];
for (let n = 0; n < 3; n += 1) {
  ids.push(await publisher.publish("notification.new", { userIds: [userId], payload: { notificationId: `${label}-${n}`, label, n } }));
}
if (mode === "own-handler") {
  process.on("SIGTERM", () => {
    void publisher.close().then((stats) => {
      console.log(JSON.stringify({ closedBy: "own-handler", sent: stats.sent }));
      process.exit(0);
    });
  });
}
if (mode !== "beforeExit") setInterval(() => undefined, 1_000); // a server keeps running until told
console.log(JSON.stringify({ ids }));

// Runs clients/browser/fanout.js's FanoutClient under Node (20: `--experimental-websocket`) against a
// real stack, for tests/integration/test_client_live.py. Settings come in FANOUT_DRIVER (JSON: url,
// token, options, topics, positions, urlDelayMs: how long building each connect URL takes, as fetching a
// ticket does); each thing the client does is one JSON line on stdout. Each line on stdin is a command
// (`{"do":"close"}`, `{"do":"start"}`, `{"do":"subscribe","topics":[…]}`, with `"throws":true` a
// subscriber whose filter throws); it stops when stdin closes.
import { createInterface } from "node:readline";

import { FanoutClient, tokenUrl } from "../../clients/browser/fanout.js";

const { url, token, options = {}, topics = [], positions = {}, urlDelayMs = 0 } = JSON.parse(
  process.env.FANOUT_DRIVER,
);
const say = (line) => process.stdout.write(`${JSON.stringify({ t: performance.now(), ...line })}\n`);
const build = tokenUrl(url, () => token);

const client = new FanoutClient({
  url: async () => {
    await new Promise((resolve) => setTimeout(resolve, urlDelayMs));
    return build();
  },
  onResync: (resync) => say({ kind: "resync", ...resync }),
  onStatus: (status) =>
    say({ kind: "status", status, connectionId: client.connectionId, connects: client.connects }),
  ...options,
});
for (const [key, seq] of Object.entries(positions)) client.setPosition(key, seq);
const report = ({ id, type, key, seq }) => say({ kind: "event", id, type, key, seq });
client.subscribe(null, report, { topics });
client.start();
const commands = {
  close: () => client.close(),
  start: () => client.start(),
  subscribe: ({ topics: more = [], throws = false }) =>
    client.subscribe(throws ? failing : null, () => {}, { topics: more }),
};
function failing() {
  throw new Error("an app's filter failed");
}
// As a browser does: an exception no one caught is reported, and the page goes on.
process.on("uncaughtException", (error) => say({ kind: "uncaught", message: String(error) }));
createInterface({ input: process.stdin })
  .on("line", (line) => {
    const command = JSON.parse(line);
    commands[command.do](command);
    say({ kind: "done", do: command.do });
  })
  .on("close", () => {
    client.close();
    process.exit(0);
  });

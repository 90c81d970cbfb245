// Runs clients/browser/fanout.js's FanoutClient under Node (20: `--experimental-websocket`) against a
// real stack, for tests/integration/test_client_live.py. Settings come in FANOUT_DRIVER (JSON: url,
// token, options, topics, positions); each thing the client does is one JSON line on stdout. It stops
// when stdin closes.
import { FanoutClient, tokenUrl } from "../../clients/browser/fanout.js";

const { url, token, options = {}, topics = [], positions = {} } = JSON.parse(process.env.FANOUT_DRIVER);
const say = (line) => process.stdout.write(`${JSON.stringify({ t: performance.now(), ...line })}\n`);

const client = new FanoutClient({
  url: tokenUrl(url, () => token),
  onResync: (resync) => say({ kind: "resync", ...resync }),
  onStatus: (status) =>
    say({ kind: "status", status, connectionId: client.connectionId, connects: client.connects }),
  ...options,
});
for (const [key, seq] of Object.entries(positions)) client.setPosition(key, seq);
client.subscribe(null, (event) => say({ kind: "event", id: event.id, type: event.type, key: event.key, seq: event.seq }), {
  topics,
});
client.start();
process.stdin.resume();
process.stdin.on("end", () => {
  client.close();
  process.exit(0);
});

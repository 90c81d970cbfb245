// A web app's use of fanout.js, checked by `tsc` (tests/integration/test_browser_client.py).
import { FanoutClient, ticketUrl, type FanoutEvent, type Resync } from "../fanout.js";

const client = new FanoutClient({
  url: ticketUrl("ws://127.0.0.1:8080/local", async () => {
    const answer = await fetch("/api/ticket", { method: "POST" });
    return ((await answer.json()) as { ticket: string }).ticket;
  }),
  onResync: (resync: Resync) => console.log(Object.keys(resync.keys), resync.events),
});

let unread = 0;
const stop = client.subscribe(["notification.new", "notification.read"], (event) => {
  // Narrowed by `type`: each branch sees its own payload.
  if (event.type === "notification.new") unread = event.payload.unreadCount ?? unread + 1;
  else unread = event.payload.unreadCount;
});

client.subscribe("chat.typing", (event) => {
  const who: string = event.payload.userId;
  const started: boolean = event.type === "chat.typing.started";
  console.log(who, started, event.key, event.seq);
});

client.subscribe(
  "event",
  (event) => {
    if (event.type === "event.rsvp.updated") console.log(event.payload.goingCount);
  },
  { topics: ["event:42"] },
);

client.subscribe(
  (event: FanoutEvent) => event.type.startsWith("system."),
  (event) => console.log(event.id),
);

// The client drops revoked topics itself; the app hides what it showed for them.
client.subscribe("system.access.revoked", (event) => {
  const topics: string[] = event.payload.topics;
  console.log(topics.includes("organization:7"));
});

client.onStatus((status) => console.log(status, client.connectionId));
client.start();

async function markRead(): Promise<void> {
  const headers: Record<string, string> = {};
  if (client.connectionId !== null) headers["X-Fanout-Connection-Id"] = client.connectionId;
  await fetch("/api/notifications/read", { method: "POST", headers });
  const answer = await client.request("presence.query", { userIds: ["u2"] });
  console.log(answer.type, unread);
  stop();
}
void markRead();

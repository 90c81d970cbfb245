// The demo page: one FanoutClient for the tab, one subscriber per surface, and the demo's JSON API
// standing in for the product's (tickets, refetches, mutations). What a web app does, in plain JS.
import { FanoutClient, ticketUrl } from "/fanout.js";

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const user = new URLSearchParams(location.search).get("user") || "alice";
const RANK = { sending: 0, sent: 1, delivered: 2, read: 3 };
const MARK = { sending: "…", sent: "✓", delivered: "✓✓", read: "✓✓ read" };
const TYPING_HIDE_MS = 6000; // an indicator nothing refreshed is hidden (protocol: typing)
let client = null; // the tab's FanoutClient, made once the config is loaded

async function api(path, body) {
  const headers = { "Content-Type": "application/json" };
  if (client?.connectionId) headers["X-Fanout-Connection-Id"] = client.connectionId;
  const answer = await fetch(path, body === undefined ? {} : { method: "POST", headers, body: JSON.stringify(body) });
  if (!answer.ok) throw new Error(`${path}: ${answer.status} ${await answer.text()}`);
  return answer.json();
}

const config = await api("/api/config");
const others = () => data.participants.filter((u) => u !== user);
let data = { unreadCount: 0, notifications: [], messages: [], participants: config.users, goingCount: 0, checkedInCount: 0 };
const messages = new Map(); // messageId (or clientMessageId while sending) -> message with its state
const acked = new Map(); // messageId -> the highest state this tab acknowledged
const presence = new Map(); // userId -> {status, lastSeenAt}
const typing = new Map(); // userId -> hide timer
const stats = { refetches: 0, frames: [], checkinFrames: 0 };

client = new FanoutClient({
  url: ticketUrl(config.wsUrl, async () => (await api("/api/ticket", { user })).ticket),
  onStatus: (status) => {
    $("status").dataset.status = status;
    $("status").textContent = status;
    $("connection-id").textContent = client.connectionId ? `conn ${client.connectionId.slice(0, 8)}` : "";
    if (status === "open") onOpen();
  },
  onResync: () => refetch(), // the server could not replay what was missed: load it again
});
window.fanoutDemo = { client, user, stats, refetch };

// ---- notifications and the badge

function setBadge(count) {
  $("badge").textContent = count > 99 ? "99+" : String(count);
  $("badge").dataset.count = String(count);
}

function renderNotifications() {
  const list = $("notification-list");
  list.replaceChildren(
    ...data.notifications.slice(0, 8).map((n) => {
      const li = document.createElement("li");
      li.textContent = n.title ?? n.notificationId;
      li.className = n.read ? "" : "unread";
      return li;
    }),
  );
  if (!data.notifications.length) list.innerHTML = '<li class="empty">Nothing yet</li>';
  setBadge(data.unreadCount);
}

client.subscribe("notification", (event) => {
  if (event.type === "notification.new") {
    data.unreadCount = event.payload.unreadCount ?? data.unreadCount + 1;
    data.notifications.unshift({ ...event.payload });
  } else {
    data.unreadCount = event.payload.unreadCount;
    if (event.type === "notification.read") data.notifications.forEach((n) => (n.read = true));
  }
  renderNotifications();
});

$("mark-read").onclick = async () => {
  data.unreadCount = 0; // this tab shows it now; the user's other tabs get notification.read
  data.notifications.forEach((n) => (n.read = true));
  renderNotifications();
  await api("/api/notifications/read", { user });
};

// ---- chat: the thread, receipts, typing

function renderThread() {
  const thread = $("thread");
  thread.replaceChildren(
    ...[...messages.values()].map((m) => {
      const li = document.createElement("li");
      li.className = `msg${m.senderId === user ? " mine" : ""}`;
      li.dataset.testid = "message";
      li.dataset.messageId = m.messageId ?? "";
      li.dataset.state = m.state ?? "";
      if (m.senderId !== user) {
        const from = document.createElement("span");
        from.className = "from";
        from.textContent = m.senderId;
        li.append(from);
      }
      li.append(m.text ?? "");
      if (m.senderId === user) {
        const receipt = document.createElement("span");
        receipt.className = "receipt";
        receipt.dataset.testid = "receipt";
        receipt.textContent = MARK[m.state] ?? "";
        li.append(receipt);
      }
      return li;
    }),
  );
  thread.scrollTop = thread.scrollHeight;
}

function keep(message, state) {
  const known = (message.messageId && messages.get(message.messageId)) || messages.get(message.clientMessageId);
  if (known && message.messageId && !messages.has(message.messageId)) messages.delete(message.clientMessageId);
  const merged = { ...known, ...message };
  merged.state = RANK[known?.state] > RANK[state] ? known.state : state;
  messages.set(merged.messageId ?? merged.clientMessageId, merged);
  return merged;
}

function ack(message, state) {
  if (message.senderId === user || !message.messageId) return;
  if (RANK[acked.get(message.messageId)] >= RANK[state] || client.status !== "open") return;
  acked.set(message.messageId, state);
  const { conversationId, messageId, senderId } = message;
  client.request("chat.ack", { conversationId, messageId, senderId, state }).catch(() => acked.delete(messageId));
}

client.subscribe("chat.message", (event) => {
  const message = keep(event.payload, "sent");
  hideTyping(message.senderId);
  ack(message, reading ? "read" : "delivered");
  renderThread();
});

client.subscribe("chat.receipt.updated", (event) => {
  const known = messages.get(event.payload.messageId);
  if (known) keep(known, event.payload.state);
  renderThread();
});

function renderTyping() {
  const who = [...typing.keys()];
  $("typing").hidden = who.length === 0;
  $("typing").textContent = who.length ? `${who.join(", ")} ${who.length > 1 ? "are" : "is"} typing…` : "";
}

function hideTyping(userId) {
  clearTimeout(typing.get(userId));
  typing.delete(userId);
  renderTyping();
}

client.subscribe("chat.typing", (event) => {
  const who = event.payload.userId;
  if (who === user) return;
  clearTimeout(typing.get(who));
  if (event.type === "chat.typing.started") typing.set(who, setTimeout(() => hideTyping(who), TYPING_HIDE_MS));
  else typing.delete(who);
  renderTyping();
});

let typingSince = 0;
let typingIdle;
function sendTyping(state) {
  if (client.status !== "open") return;
  client.request("chat.typing", { conversationId: data.conversationId, state }).catch(() => {});
}
$("composer").addEventListener("input", () => {
  const empty = $("composer").value.trim() === "";
  clearTimeout(typingIdle);
  if (empty) {
    if (typingSince) sendTyping("stopped");
    typingSince = 0;
    return;
  }
  if (Date.now() - typingSince > 3000) {
    typingSince = Date.now(); // refreshed every 3 s while typing goes on
    sendTyping("started");
  }
  typingIdle = setTimeout(() => {
    typingSince = 0;
    sendTyping("stopped");
  }, 4000);
});

// Looking at the conversation (the composer has focus) reads what arrived.
let reading = false;
$("composer").addEventListener("focus", () => {
  reading = true;
  for (const m of messages.values()) ack(m, "read");
});
$("composer").addEventListener("blur", () => (reading = false));

$("composer-form").onsubmit = async (e) => {
  e.preventDefault();
  const text = $("composer").value.trim();
  if (!text) return;
  $("composer").value = "";
  clearTimeout(typingIdle);
  if (typingSince) sendTyping("stopped");
  typingSince = 0;
  const clientMessageId = `tmp-${crypto.randomUUID()}`;
  keep({ clientMessageId, senderId: user, text, conversationId: data.conversationId }, "sending");
  renderThread();
  const { message } = await api("/api/messages", { user, text, clientMessageId });
  keep(message, "sent");
  renderThread();
};

// ---- presence

function renderPeople() {
  $("people").replaceChildren(
    ...others().map((u) => {
      const p = presence.get(u) ?? { status: "offline" };
      const span = document.createElement("span");
      span.className = "person";
      const seen = p.status !== "online" && p.lastSeenAt ? `last seen ${new Date(p.lastSeenAt).toLocaleTimeString()}` : "";
      span.innerHTML = `<i class="dot" data-testid="presence-${u}" data-status="${p.status}"></i>`;
      span.append(u);
      if (seen) span.append(Object.assign(document.createElement("small"), { textContent: seen }));
      return span;
    }),
  );
}

client.subscribe("user.presence.updated", (event) => {
  presence.set(event.payload.userId, event.payload);
  if (event.payload.status !== "online") hideTyping(event.payload.userId);
  renderPeople();
});

async function onOpen() {
  for (const m of messages.values()) ack(m, reading ? "read" : "delivered"); // acks this tab could not send
  try {
    const answer = await client.request("presence.query", { userIds: others() });
    for (const p of answer.payload.users ?? []) presence.set(p.userId, p);
    renderPeople();
  } catch {
    // the socket closed meanwhile: asked again on the next open
  }
}

// ---- the event's live counters (topic event:<id>)

client.subscribe(
  "event",
  (event) => {
    if (event.type === "event.rsvp.updated" && event.payload.goingCount != null) data.goingCount = event.payload.goingCount;
    if (event.type === "event.attendance.updated") {
      data.checkedInCount = event.payload.checkedInCount;
      stats.checkinFrames += 1;
    }
    renderCounters();
  },
  { topics: [config.topic] },
);

function renderCounters() {
  $("going").textContent = String(data.goingCount);
  $("checked-in").textContent = String(data.checkedInCount);
  $("checkin-frames").textContent = String(stats.checkinFrames);
}

// ---- every frame, for the log

client.subscribe(null, (event) => {
  stats.frames.push(event.id);
  const li = document.createElement("li");
  li.innerHTML = `<b></b> `;
  li.firstChild.textContent = event.type;
  li.append(`${event.id}${event.seq !== undefined ? ` seq ${event.seq}` : ""}`);
  $("log").prepend(li);
  while ($("log").children.length > 40) $("log").lastChild.remove();
});

// ---- loading, and loading again after a resync

async function refetch() {
  stats.refetches += 1;
  data = await api(`/api/state?user=${encodeURIComponent(user)}`);
  for (const m of data.messages) keep(m, m.senderId === user ? "sent" : "delivered");
  renderNotifications();
  renderThread();
  renderCounters();
  renderPeople();
}

document.title = `fanout demo · ${user}`;
$("me").textContent = user;
$("topic").textContent = config.topic;
$("cli-hint").textContent =
  `fanout publish event.rsvp.updated --topic ${config.topic} --payload '{"eventId":"${config.eventId}","goingCount":42}'`;
for (const button of document.querySelectorAll("[data-simulate]")) {
  button.onclick = () => api("/api/simulate", { user, what: button.dataset.simulate });
}
await refetch();
stats.refetches = 0; // the first load is not a resync
client.start();

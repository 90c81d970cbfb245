// fanout.js: the browser client of fanout, one ES module, no build step, no dependencies.
//
// One WebSocket per tab, shared by every subscriber in it. The connection's life: build the connect
// URL (a ticket fetched from the app's API), `hello` first (the connection id and the heartbeat), the
// subscribers' topics, `resume` from what the tab already has, then events until the socket closes, with
// a `ping` every `heartbeatS`. A lost socket comes back after exponential backoff with full jitter, and
// not while the tab is hidden. Each event is dropped when its id was seen already and handed on in `seq`
// order per ordering key; a gap is held back, then resumed, then given up (subscribers are told to
// refetch, as for a `system.resync`). A `system.access.revoked` takes its topics out of every subscriber,
// so no reconnect asks for them again. A `hello`, `subscribe`, `resume` or `presence.query` refused
// `rate_limited` is sent again once the server's window has passed, a few times at most. The rules are
// docs/client.md's; types in fanout.d.ts beside it.

/** Keys a resume may name: streams are named like topics (`kind:id`). */
const RESUMABLE = /^[a-z][a-z0-9_]{0,31}:[A-Za-z0-9_.@=+-][A-Za-z0-9_.:@=+-]{0,127}$/;
const MAX_RESUME_KEYS = 100;
const MAX_TOPICS_PER_FRAME = 100;
/** How often a refused resume is tried again without the key the server named. */
const MAX_RESUME_RETRIES = 5;
/** The event by which the server takes topics away from this user (protocol section 8). */
export const ACCESS_REVOKED = "system.access.revoked";
/** This tab's earlier connection ids a resume names: events that excluded them were its own changes. */
const MAX_EARLIER_IDS = 10;
/** Actions sent again when refused `rate_limited`: the server counted nothing of them, and each is worth
 * as much `windowS` later. A typing indicator or a domain action is not: the app decides. */
const PATIENT_ACTIONS = new Set(["hello", "subscribe", "notification.subscribe", "resume", "presence.query"]);
/** How often one such frame is sent again; then the refusal is its answer (the action's failure path). */
const MAX_RATE_LIMITED_RETRIES = 3;
/** The longest `windowS` waited for, in seconds; a longer (or malformed) one is taken as the answer. */
const MAX_WINDOW_S = 60;
/** The longest `afterMs` of a `system.reconnect` waited for. */
const MAX_RECONNECT_AFTER_MS = 300_000;
/** The shortest `heartbeatS` of a `hello` answer followed, in seconds; a shorter (or malformed) one is
 * not: the lowest is kept for good, and a ping a millisecond would be too. */
const MIN_HEARTBEAT_S = 1;
/** The catalog's `bulk` types (`"priority": "bulk"` in `fanout schema`), of which only the latest value
 * per key matters (live counters): the worker conflates them, so their `seq` skips and is never a gap.
 * tests/integration/test_browser_client.py checks this list against the catalog. */
export const LIVE_COUNTERS = new Set([
  "event.attendance.updated",
  "event.rsvp.updated",
  "system.broadcast",
  "system.heartbeat",
]);

/** A `seq` as the protocol has it: a whole number from 0 to 2^53-1; a resume naming another is refused. */
const isSeq = (seq) => Number.isSafeInteger(seq) && seq >= 0;

/** Reconnect delays: uniform in [0, min(capMs, baseMs * 2^attempt)] (full jitter). */
export class Backoff {
  constructor({ baseMs = 500, capMs = 30_000, random = Math.random } = {}) {
    this.baseMs = baseMs;
    this.capMs = capMs;
    this.random = random;
    this.attempt = 0;
  }

  /** The largest delay the next attempt may wait. */
  bound() {
    return Math.min(this.capMs, this.baseMs * 2 ** Math.min(this.attempt, 32));
  }

  /** The delay before the next attempt; each call doubles the bound up to capMs. */
  next() {
    const delay = this.random() * this.bound();
    this.attempt += 1;
    return delay;
  }

  /** A connection came up and answered `hello`: the next loss starts again from baseMs. */
  reset() {
    this.attempt = 0;
  }
}

/** The last `capacity` event ids seen; older ids are forgotten. */
export class RecentIds {
  constructor(capacity = 10_000) {
    if (!(capacity >= 1)) throw new RangeError("capacity must be at least 1");
    this.capacity = capacity;
    this.ids = new Set();
  }

  get size() {
    return this.ids.size;
  }

  has(id) {
    return this.ids.has(id);
  }

  /** Remember `id`; false when it was there already (a duplicate). */
  add(id) {
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    if (this.ids.size > this.capacity) this.ids.delete(this.ids.values().next().value);
    return true;
  }
}

/** Per-key positions (the last `seq` handed on) and the events held back behind a gap. */
export class Reorderer {
  constructor({ holdMs = 2000, maxHeld = 1000, maxKeys = 10_000, now = () => performance.now() } = {}) {
    this.holdMs = holdMs;
    this.maxHeld = maxHeld;
    this.maxKeys = maxKeys;
    this.now = now;
    this.positions = new Map(); // in order of last change: the last ones are the freshest
    this.held = new Map(); // key -> Map(seq -> event)
    this.gapSince = new Map(); // key -> when its gap opened
  }

  /** The events ready to hand on now that `event` arrived, in order (possibly none). */
  push(event) {
    const { key, seq } = event;
    if (typeof key !== "string" || !isSeq(seq)) return [event];
    const position = this.positions.get(key);
    if (position === undefined) {
      this.#move(key, seq);
      return [event, ...this.#drain(key)];
    }
    const held = this.held.get(key);
    if (seq <= position || held?.has(seq)) return []; // already handed on, or already waiting
    if (seq === position + 1 || LIVE_COUNTERS.has(event.type)) {
      this.#move(key, seq); // a live counter's seq skips the values conflation dropped: never a gap
      return [event, ...this.#drain(key)];
    }
    if (!held) this.held.set(key, new Map([[seq, event]]));
    else held.set(seq, event);
    if (!this.gapSince.has(key)) this.gapSince.set(key, this.now());
    if (this.held.get(key).size > this.maxHeld) return this.skip(key);
    return [];
  }

  /** Keys whose gap has been open for holdMs or more. */
  overdue() {
    const cutoff = this.now() - this.holdMs;
    return [...this.gapSince].filter(([, since]) => since <= cutoff).map(([key]) => key);
  }

  /** Give up on a key's gap: move to just before its first held event and hand on what is held. */
  skip(key) {
    const held = this.held.get(key);
    if (!held || held.size === 0) return [];
    this.#move(key, Math.min(...held.keys()) - 1);
    return this.#drain(key);
  }

  /** Set a key's position (the app holds the key's data up to `seq`); held events up to it are dropped,
   * those after it handed on as far as they run without a gap. */
  expect(key, seq) {
    this.#move(key, seq);
    const held = this.held.get(key);
    if (held) for (const s of [...held.keys()]) if (s <= seq) held.delete(s);
    return this.#drain(key);
  }

  /** Drop a key's position and held events: a stream the tab may no longer follow (a revoked topic). */
  forget(key) {
    this.positions.delete(key);
    this.held.delete(key);
    this.gapSince.delete(key);
  }

  #move(key, seq) {
    this.positions.delete(key);
    this.positions.set(key, seq);
    if (this.positions.size > this.maxKeys) {
      for (const k of this.positions.keys()) {
        if (!this.held.get(k)?.size) {
          this.positions.delete(k);
          break;
        }
      }
    }
  }

  #drain(key) {
    const out = [];
    const held = this.held.get(key);
    let position = this.positions.get(key);
    while (held && held.has(position + 1)) {
      position += 1;
      out.push(held.get(position));
      held.delete(position);
    }
    if (out.length) this.#move(key, position);
    if (held && held.size) {
      if (out.length) this.gapSince.set(key, this.now()); // progress: the rest of the gap waits anew
    } else {
      this.held.delete(key);
      this.gapSince.delete(key);
    }
    return out;
  }
}

/** The seconds a `rate_limited` refusal asks to wait (its `windowS`); null for any other answer, or a
 * window that is not a number of seconds above 0 and at most MAX_WINDOW_S. */
export function rateLimitedWait(answer) {
  const payload = answer?.payload;
  if (answer?.type !== "system.error" || payload?.code !== "rate_limited") return null;
  const windowS = payload.windowS;
  return typeof windowS === "number" && windowS > 0 && windowS <= MAX_WINDOW_S ? windowS : null;
}

/** The milliseconds within which to reconnect when `event` is a `system.reconnect` to follow: its
 * `afterMs` (1 s without a sane one, at most MAX_RECONNECT_AFTER_MS: a tab kept away longer misses every
 * event meanwhile); null for any other event, and for an upgrade ask (an event of a payload version this
 * tab does not speak), which is the app's to act on with a newer build: the same hello on a new
 * connection would only be asked again, per event. */
export function reconnectAfterMs(event) {
  if (event?.type !== "system.reconnect" || isUpgradeAsk(event)) return null;
  const after = event.payload?.afterMs;
  return Number.isFinite(after) && after >= 0 ? Math.min(after, MAX_RECONNECT_AFTER_MS) : 1000;
}

/** A `system.reconnect` asking to upgrade (protocol section 12): the worker posts it to one connection and
 * keeps it in no history, so its id is never a resume's `lastEventId` (that would answer a resync). */
export function isUpgradeAsk(event) {
  return event?.type === "system.reconnect" && event.payload?.reason === "upgrade";
}

/** The topics of `asked` that a `forbidden_topic` refusal names: every one in its `topics`, or the one
 * `topic` of a server before that. Nothing for another answer, and never a topic not asked, so a retry
 * without them always asks for less. */
export function refusedTopics(answer, asked) {
  const payload = answer?.payload;
  if (answer?.type !== "system.error" || payload?.code !== "forbidden_topic") return new Set();
  const named = Array.isArray(payload.topics) ? payload.topics : [payload.topic];
  return new Set(named.filter((t) => typeof t === "string" && asked.includes(t)));
}

/** A URL builder that fetches a fresh single-use ticket for every connect. */
export function ticketUrl(base, fetchTicket) {
  return async () => {
    const ticket = await fetchTicket();
    return `${base}${base.includes("?") ? "&" : "?"}ticket=${encodeURIComponent(ticket)}`;
  };
}

/** A URL builder that puts a fresh token in the query string (prefer tickets: URLs get logged). */
export function tokenUrl(base, getToken) {
  return async () => {
    const token = await getToken();
    return `${base}${base.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
  };
}

/** An action frame got no answer: the socket closed, or the answer did not come in time. */
export class RequestFailed extends Error {
  constructor(message) {
    super(message);
    this.name = "RequestFailed";
  }
}

/** A close frame's reason: at most 123 bytes of UTF-8 (close() throws past them), whole characters. */
function closeReason(reason) {
  const chars = [...String(reason)].slice(0, 100);
  while (new TextEncoder().encode(chars.join("")).length > 123) chars.pop();
  return chars.join("");
}

function matcher(filter) {
  if (typeof filter === "function") return filter;
  const types = filter === undefined || filter === null ? [] : [filter].flat();
  if (types.length === 0) return () => true;
  return (event) => types.some((t) => event.type === t || event.type.startsWith(`${t}.`));
}

/** The tab's connection to fanout. Create one per tab (or use `shared`), subscribe, then `start()`. */
export class FanoutClient {
  constructor(options) {
    const o = { ...options };
    if (typeof o.url !== "function") throw new TypeError("url: an async () => string URL builder");
    this.url = o.url;
    this.heartbeatS = o.heartbeatS ?? 30;
    this.pongTimeoutMs = o.pongTimeoutMs ?? 10_000;
    this.requestTimeoutMs = o.requestTimeoutMs ?? 10_000;
    this.replayWaitMs = o.replayWaitMs ?? 10_000;
    this.payloads = o.payloads; // hello's payload versions per type, when the app speaks newer ones
    this.backoff = new Backoff({ baseMs: o.backoffBaseMs, capMs: o.backoffCapMs, random: o.random });
    this.reorder = new Reorderer({ holdMs: o.holdMs ?? 2000 });
    this.recent = new RecentIds(o.dedupeCapacity ?? 10_000);
    this.WebSocket = o.WebSocket ?? globalThis.WebSocket;
    this.document = o.document ?? globalThis.document;
    this.random = o.random ?? Math.random;
    this.connectionId = null; // from system.connected; null while not connected
    this.connectionIds = []; // this tab's connection ids, the latest last: a resume names them
    this.userId = null;
    this.lastEventId = null; // the last event handed on
    this.status = "idle"; // idle | connecting | open | waiting | hidden | closed
    this.connects = 0;
    this.duplicates = 0;
    this.canResume = true;
    this.subs = new Set();
    this.listeners = { status: new Set(), resync: new Set() };
    this.pending = new Map(); // frame id -> {resolve, reject, timer}
    this.ids = 0;
    this.ws = null;
    this.topicsSent = false; // this socket was sent the subscribers' topics: a later change sends its own
    this.timers = new Set();
    this.sleeps = new Set(); // the rate_limited waits of this socket's frames: they end when it closes
    this.resumedGap = new Map(); // key -> when its resumed gap is given up
    this.unresumable = new Set(); // keys the server refused to resume
    this.running = false;
    this.looping = false; // #run is going: after close(), until it sees that, or carries on after start()
    this.wake = null; // resolves the wait before a reconnect early (tab visible again, network back)
    this.onVisibility = () => {
      if (!this.#hidden() && this.wake) this.wake();
    };
    this.onOnline = () => this.wake?.();
    if (o.onResync) this.listeners.resync.add(o.onResync);
    if (o.onStatus) this.listeners.status.add(o.onStatus);
  }

  /** Connect, and keep reconnecting until `close()`. */
  start() {
    if (this.running) return this;
    this.running = true;
    this.document?.addEventListener?.("visibilitychange", this.onVisibility);
    globalThis.addEventListener?.("online", this.onOnline);
    if (!this.looping) this.#run(); // a loop not yet ended by close() carries on: one socket, not two
    return this;
  }

  /** Close the socket and stop reconnecting. */
  close() {
    this.running = false;
    this.document?.removeEventListener?.("visibilitychange", this.onVisibility);
    globalThis.removeEventListener?.("online", this.onOnline);
    this.wake?.();
    this.ws?.close(1000, "client closed");
    this.#status("closed");
  }

  /** Ask for a reconnect now (a `system.reconnect`, or the app's own reason). */
  reconnect(reason = "asked") {
    this.ws?.close(4000, closeReason(reason));
  }

  /**
   * Hand `callback` every event whose type matches `filter`: a type or prefix ("chat.typing", "chat"),
   * a list of them, or a predicate. `options.topics` are added to the connection while subscribed;
   * `options.onResync` hears what to refetch. Returns the unsubscribe function.
   */
  subscribe(filter, callback, options = {}) {
    const sub = {
      matches: matcher(filter),
      callback,
      topics: [...(options.topics ?? [])],
      onResync: options.onResync,
    };
    const known = new Set(this.#topics());
    this.subs.add(sub);
    const fresh = sub.topics.filter((t) => !known.has(t));
    if (fresh.length && this.topicsSent) {
      this.request("subscribe", { topics: fresh }).catch(() => {}); // a later reconnect sends it again
    }
    return () => {
      if (!this.subs.delete(sub)) return;
      const left = new Set(this.#topics());
      const gone = sub.topics.filter((t) => !left.has(t));
      if (gone.length && this.topicsSent) {
        this.request("unsubscribe", { topics: gone }).catch(() => {});
      }
    };
  }

  /** Listen to status changes ("connecting", "open", "waiting", "hidden", "closed"); returns the remover. */
  onStatus(callback) {
    this.listeners.status.add(callback);
    return () => this.listeners.status.delete(callback);
  }

  /** Listen to resyncs: `{keys: {key: seq}, events: boolean}` to refetch; returns the remover. */
  onResync(callback) {
    this.listeners.resync.add(callback);
    return () => this.listeners.resync.delete(callback);
  }

  /** Start `key` at `seq`: the app's data already holds the key's events up to it. */
  setPosition(key, seq) {
    this.#handOn(this.reorder.expect(key, seq));
  }

  /** Send one action frame and resolve with its answer (matched by `replyTo`). A frame of a `hello`,
   * `subscribe`, `resume` or `presence.query` refused `rate_limited` is sent again on the same socket
   * once the answer's `windowS` (and up to a fifth more, so tabs refused together do not return
   * together) has passed, at most MAX_RATE_LIMITED_RETRIES times. */
  async request(action, fields = {}, timeoutMs = this.requestTimeoutMs) {
    const ws = this.ws;
    let answer = await this.#send(ws, action, fields, timeoutMs);
    for (let retry = 0; PATIENT_ACTIONS.has(action) && retry < MAX_RATE_LIMITED_RETRIES; retry++) {
      const windowS = rateLimitedWait(answer);
      if (windowS === null) break;
      this.lastError = new Error(`${action}: rate_limited`);
      await this.#sleep(windowS * 1000 * (1 + 0.2 * this.random()));
      if (this.ws !== ws) throw new RequestFailed(`${action}: not connected`);
      answer = await this.#send(ws, action, fields, timeoutMs);
    }
    return answer;
  }

  /** Wait `ms`, or until the socket closes: a refusal's window is its connection's, gone with it. */
  #sleep(ms) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.sleeps.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.sleeps.add(done);
    });
  }

  #send(ws, action, fields, timeoutMs) {
    if (!ws || ws.readyState !== 1) return Promise.reject(new RequestFailed(`${action}: not connected`));
    const id = `c${++this.ids}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RequestFailed(`${action}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ ...fields, action, id }));
    });
  }

  // ---- the connection's life

  async #run() {
    this.looping = true;
    try {
      while (this.running) {
        if (this.#hidden()) {
          this.#status("hidden"); // a hidden tab does not reconnect; it does when it is shown again
          await this.#wait(Infinity);
          continue;
        }
        try {
          await this.#connectOnce();
        } catch (error) {
          this.lastError = error;
        }
        if (!this.running) break;
        const asked = this.reconnectAfterMs;
        this.reconnectAfterMs = undefined;
        const delay = asked !== undefined ? this.random() * asked : this.backoff.next();
        this.#status("waiting");
        await this.#wait(delay);
      }
    } finally {
      this.looping = false;
    }
  }

  #wait(ms) {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
      const timer = Number.isFinite(ms) ? setTimeout(done, ms) : undefined;
      this.wake = done;
    });
  }

  async #connectOnce() {
    this.#status("connecting");
    const url = await this.url();
    if (!this.running) return; // closed while the URL was built (a ticket fetched): no socket
    const ws = new this.WebSocket(url);
    this.ws = ws;
    const closed = new Promise((resolve) => {
      ws.onclose = (event) => {
        if (this.ws === ws) this.#unanswered(); // now, not at their timeout: #open may be awaiting them
        resolve(event);
      };
    });
    ws.onmessage = (message) => this.#onFrame(message.data);
    const refused = closed.then(() => {
      throw new RequestFailed("the socket closed before it opened");
    });
    refused.catch(() => {}); // once open, a close is awaited below, not here
    try {
      await Promise.race([new Promise((resolve) => (ws.onopen = resolve)), refused]);
      await this.#open();
      this.connects += 1;
      this.backoff.reset();
      this.#status("open");
      this.#every(this.heartbeatS * 1000, () => this.#ping(ws));
      this.#every(Math.max(50, this.reorder.holdMs / 4), () => this.#watchGaps(ws));
      await closed;
    } finally {
      for (const timer of this.timers) clearInterval(timer);
      this.timers.clear();
      this.connectionId = null;
      this.ws = null;
      this.topicsSent = false;
      this.#unanswered();
      if (ws.readyState < 2) ws.close();
    }
  }

  /** The socket closed: its frames fail now, those waiting out a rate_limited window too. */
  #unanswered() {
    for (const [, answer] of this.pending) {
      clearTimeout(answer.timer);
      answer.reject(new RequestFailed("the socket closed"));
    }
    this.pending.clear();
    for (const wake of [...this.sleeps]) wake(); // sent again on no socket: it fails
  }

  #every(ms, fn) {
    this.timers.add(setInterval(fn, ms));
  }

  /** `hello`, the subscribers' topics, then `resume` from what this tab has. */
  async #open() {
    const hello = await this.request("hello", {
      protocols: [1],
      ...(this.payloads ? { payloads: this.payloads } : {}),
    });
    const payload = hello.payload ?? {};
    if (hello.type === "system.connected") {
      const text = (value) => (typeof value === "string" ? value : null); // as fanout.d.ts types them
      this.connectionId = text(payload.connectionId);
      if (this.connectionId !== null) {
        this.connectionIds = [...this.connectionIds, this.connectionId].slice(-MAX_EARLIER_IDS);
      }
      this.userId = text(payload.userId);
      const heartbeatS = payload.heartbeatS;
      if (typeof heartbeatS === "number" && heartbeatS >= MIN_HEARTBEAT_S) {
        this.heartbeatS = Math.min(this.heartbeatS, heartbeatS);
      }
      this.canResume = payload.resume !== false;
    } else if (payload.code !== "unknown_action") {
      throw new RequestFailed(`hello refused: ${payload.code}`); // a server before hello: carry on
    }
    const topics = this.#topics();
    this.topicsSent = true; // a subscriber added or removed from now on is not in `topics`
    for (let i = 0; i < topics.length; i += MAX_TOPICS_PER_FRAME) {
      await this.#subscribeAgain(topics.slice(i, i + MAX_TOPICS_PER_FRAME));
    }
    if (this.reorder.positions.size || this.lastEventId) {
      await this.#resume([...this.reorder.positions.keys()], true);
    } else if (this.connects > 0) {
      this.#resync({ keys: {}, events: true }); // a reconnect with nothing to resume from: refetch
    }
  }

  /** One refused topic refuses the whole frame: the topics this tab may no longer follow (revocations
   * it missed while away) are left out of this connection and the rest sent again (`refusedTopics`). */
  async #subscribeAgain(topics) {
    while (topics.length) {
      const answer = await this.request("subscribe", { topics });
      if (answer.type === "subscribe.ok") return;
      this.lastError = new Error(`subscribe: ${answer.payload?.code}`);
      const refused = refusedTopics(answer, topics);
      if (!refused.size) return;
      topics = topics.filter((t) => !refused.has(t));
    }
  }

  async #resume(keys, withEvents) {
    let positions = Object.fromEntries(
      keys
        .filter((k) => RESUMABLE.test(k) && !this.unresumable.has(k))
        .slice(-MAX_RESUME_KEYS)
        .map((k) => [k, this.reorder.positions.get(k)]),
    );
    const last = withEvents ? this.lastEventId : null;
    const refused = {};
    for (let tries = 0; ; tries++) {
      if (!this.canResume || !(Object.keys(positions).length || last)) {
        return this.#resync({ keys: { ...positions, ...refused }, events: Boolean(last) });
      }
      const answer = await this.request("resume", {
        positions,
        ...(last ? { lastEventId: last } : {}),
        ...(this.connectionIds.length ? { connectionIds: this.connectionIds } : {}), // no echo of ours
      });
      const payload = answer.payload ?? {};
      if (answer.type === "resume.ok") {
        const until = performance.now() + (payload.replaying ? this.replayWaitMs : this.reorder.holdMs);
        for (const key of Object.keys(positions)) this.resumedGap.set(key, until);
        if (Object.keys(refused).length) this.#resync({ keys: refused, events: false });
        return;
      }
      if (answer.type === "system.resync") {
        return this.#resync({ keys: { ...refused, ...payload.keys }, events: payload.events === true });
      }
      // A key the connection may not follow: resume the others, and refetch that one.
      const key = payload.key;
      if (payload.code === "forbidden_stream" && key in positions && tries < MAX_RESUME_RETRIES) {
        this.unresumable.add(key);
        refused[key] = positions[key];
        positions = Object.fromEntries(Object.entries(positions).filter(([k]) => k !== key));
        continue;
      }
      if (payload.code === "unknown_action") this.canResume = false;
      return this.#resync({ keys: { ...positions, ...refused }, events: Boolean(last) });
    }
  }

  /** Move the keys to their new positions, then tell the subscribers what to refetch. */
  #resync(resync) {
    const keys = {};
    for (const [key, seq] of Object.entries(resync.keys ?? {})) {
      if (!isSeq(seq)) continue;
      keys[key] = seq;
      this.#handOn(this.reorder.expect(key, seq));
    }
    const notice = { keys, events: Boolean(resync.events) };
    if (!Object.keys(keys).length && !notice.events) return;
    for (const listener of [...this.listeners.resync]) this.#safely(listener, notice);
    for (const sub of [...this.subs]) if (sub.onResync) this.#safely(sub.onResync, notice);
  }

  #onFrame(text) {
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    if (!frame || typeof frame !== "object" || Array.isArray(frame)) return;
    if (frame.type === "system.error" && frame.payload?.code === "unknown_connection") {
      // The record expired or was pruned: nothing reaches this socket any more, whatever frame was
      // answered so (a ping's answer too). A new connection gets a record.
      this.reconnect("unknown_connection");
    }
    const answer = this.pending.get(frame.replyTo);
    if (answer) {
      this.pending.delete(frame.replyTo);
      clearTimeout(answer.timer);
      answer.resolve(frame);
      return;
    }
    if (frame.type === "system.resync") return void this.#resync(frame.payload ?? {});
    if (typeof frame.id !== "string" || typeof frame.type !== "string") return;
    if (!this.recent.add(frame.id)) {
      this.duplicates += 1;
      return;
    }
    this.#handOn(this.reorder.push(frame));
  }

  #handOn(events) {
    for (const event of events) {
      if (!isUpgradeAsk(event)) this.lastEventId = event.id;
      if (event.type === ACCESS_REVOKED) this.#revoked(event.payload?.topics);
      for (const sub of [...this.subs]) {
        // A filter is the app's code too: one that throws is reported, and costs no one else the event.
        if (this.subs.has(sub)) this.#safely((e) => sub.matches(e) && sub.callback(e), event);
      }
      const after = reconnectAfterMs(event);
      if (after !== null) {
        this.reconnectAfterMs = after;
        this.reconnect(event.payload?.reason ?? "system.reconnect");
      }
    }
  }

  /** The server took these topics off every connection of this user: no subscriber holds them any more
   * (a reconnect does not ask for them, an unsubscribe does not name them), and no resume names them. */
  #revoked(topics) {
    const gone = new Set(Array.isArray(topics) ? topics.filter((t) => typeof t === "string") : []);
    for (const sub of this.subs) sub.topics = sub.topics.filter((t) => !gone.has(t));
    for (const key of gone) {
      this.reorder.forget(key);
      this.resumedGap.delete(key);
    }
  }

  #safely(fn, value) {
    try {
      fn(value);
    } catch (error) {
      setTimeout(() => {
        throw error; // report it as uncaught, without breaking the other subscribers
      });
    }
  }

  /** A ping every heartbeatS; no answer within pongTimeoutMs closes the socket, and it reconnects. */
  async #ping(ws) {
    try {
      await this.request("ping", {}, this.pongTimeoutMs);
    } catch {
      ws.close(4001, "no pong");
    }
  }

  /** A gap held for holdMs is resumed; still open once the replay had time to arrive, it is given up
   * and the subscribers told to refetch the key. */
  async #watchGaps(ws) {
    if (this.watching) return;
    this.watching = true;
    try {
      const overdue = new Set(this.reorder.overdue());
      const now = performance.now();
      for (const [key, until] of this.resumedGap) {
        if (!overdue.has(key) && until <= now) this.resumedGap.delete(key);
      }
      for (const key of overdue) {
        const until = this.resumedGap.get(key);
        if (until === undefined && this.canResume && RESUMABLE.test(key) && !this.unresumable.has(key)) {
          try {
            await this.#resume([key], false);
          } catch {
            ws.close(4002, "resume unanswered"); // the connection is not working: reconnect
            return;
          }
        } else if (until === undefined || now >= until) {
          this.resumedGap.delete(key);
          this.#handOn(this.reorder.skip(key));
          this.#resync({ keys: { [key]: this.reorder.positions.get(key) }, events: false });
        }
      }
    } finally {
      this.watching = false;
    }
  }

  #topics() {
    return [...new Set([...this.subs].flatMap((sub) => sub.topics))];
  }

  #hidden() {
    return this.document?.visibilityState === "hidden";
  }

  #status(status) {
    if (status === this.status) return;
    this.status = status;
    for (const listener of [...this.listeners.status]) this.#safely(listener, status);
  }
}

let tabClient = null;

/** The tab's one client: created (and started) by the first call, returned as it is by later ones
 * until it is closed (a sign-out): the next call after that creates a new one with its own options. */
export function shared(options) {
  if (!tabClient || !tabClient.running) tabClient = new FanoutClient(options).start();
  return tabClient;
}

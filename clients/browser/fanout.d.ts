// Types of fanout.js, from the generated event catalog (clients/typescript/src/catalog.ts).
import type { CatalogEnvelope } from "../typescript/src/catalog.js";

/** A frame the client hands on: a catalogued event (switch on `type`), with its ordering key if any. */
export type FanoutEvent = CatalogEnvelope & { key?: string; payloadVersion?: number };
/** Every event type of the catalog. */
export type EventType = FanoutEvent["type"];
type Prefixes<S extends string> = S extends `${infer Head}.${infer Rest}`
  ? Head | `${Head}.${Prefixes<Rest>}`
  : never;
/** What a subscriber may name: an event type ("chat.typing.started") or a prefix of one ("chat.typing"). */
export type TypeFilter = EventType | Prefixes<EventType>;
/** The events a filter `T` selects: type `T`, or a type under `T.`. */
export type Matching<T extends string> = Extract<FanoutEvent, { type: T | `${T}.${string}` }>;

/** Which keys to refetch (each now at the given `seq`) and, with `events`, whatever has no key. */
export interface Resync {
  keys: Record<string, number>;
  events: boolean;
}

export type Status = "idle" | "connecting" | "open" | "waiting" | "hidden" | "closed";
/** Builds the connect URL anew for every connect, with a fresh ticket or token. */
export type UrlBuilder = () => Promise<string> | string;
export type Unsubscribe = () => void;

/** An answer frame (`system.connected`, `presence.ok`, `system.error` ...), echoing the frame's id. */
export interface Answer {
  v: 1;
  type: string;
  payload: Record<string, unknown>;
  sentAt: string;
  replyTo?: string;
}

export interface SubscribeOptions {
  /** Topics (`kind:id`) the connection holds while this subscriber does, e.g. `event:42`. */
  topics?: readonly string[];
  /** Told what to refetch after a resync or a gap given up. */
  onResync?: (resync: Resync) => void;
}

export interface ClientOptions {
  /** The connect URL, built on every connect: `ticketUrl(base, fetchTicket)`. */
  url: UrlBuilder;
  /** Seconds between pings, at most the server's `heartbeatS` (one of 1 s or more; default 30). */
  heartbeatS?: number;
  /** A ping unanswered this long closes the socket, and it reconnects (default 10,000). */
  pongTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** How long a gap is held before it is resumed (default 2,000). */
  holdMs?: number;
  /** How long a resumed gap waits for the replay before it is given up (default 10,000). */
  replayWaitMs?: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  /** Event ids remembered for dropping duplicates (default 10,000). */
  dedupeCapacity?: number;
  /** Payload versions the app understands per type, sent in `hello`. */
  payloads?: Partial<Record<EventType, number[]>>;
  onResync?: (resync: Resync) => void;
  onStatus?: (status: Status) => void;
  WebSocket?: typeof WebSocket;
  document?: Pick<Document, "visibilityState" | "addEventListener" | "removeEventListener">;
  random?: () => number;
}

export declare class FanoutClient {
  constructor(options: ClientOptions);
  /** This socket's id (send it as `excludeConnectionIds` with mutations); null while not connected. */
  readonly connectionId: string | null;
  readonly userId: string | null;
  /** This tab's connection ids, the latest last (at most 10): a resume names them, so no echo. */
  readonly connectionIds: readonly string[];
  readonly status: Status;
  readonly lastEventId: string | null;
  /** Sockets opened (1 + reconnects). */
  readonly connects: number;
  /** Frames dropped as duplicates. */
  readonly duplicates: number;
  /** Whether the server answers `resume` (from `hello`). */
  readonly canResume: boolean;
  start(): this;
  close(): void;
  reconnect(reason?: string): void;
  subscribe<const T extends TypeFilter>(
    filter: T | readonly T[],
    callback: (event: Matching<T>) => void,
    options?: SubscribeOptions,
  ): Unsubscribe;
  subscribe(
    filter: ((event: FanoutEvent) => boolean) | null | undefined,
    callback: (event: FanoutEvent) => void,
    options?: SubscribeOptions,
  ): Unsubscribe;
  onStatus(callback: (status: Status) => void): Unsubscribe;
  onResync(callback: (resync: Resync) => void): Unsubscribe;
  setPosition(key: string, seq: number): void;
  /** Send one action frame and resolve with its answer. A `hello`, `subscribe`, `resume` or
   * `presence.query` refused `rate_limited` is sent again after the answer's `windowS` (plus up to a
   * fifth), at most 3 times; then the refusal is the answer. */
  request(action: string, fields?: Record<string, unknown>, timeoutMs?: number): Promise<Answer>;
}

/** The tab's one client, created and started by the first call; after it is closed (a sign-out), the
 * next call creates a new one with its own options. */
export declare function shared(options: ClientOptions): FanoutClient;
/** The seconds a `rate_limited` answer asks to wait (`windowS`, above 0 and at most 60); null otherwise. */
export declare function rateLimitedWait(answer: Answer): number | null;
/** A `system.reconnect` asking to upgrade: kept in no history, so never taken as the last event id. */
export declare function isUpgradeAsk(event: { type?: unknown; payload?: unknown } | null | undefined): boolean;
/** The milliseconds within which a `system.reconnect` asks to reconnect (`afterMs`, 1 s without one, at
 * most 5 minutes); null for an upgrade ask (the app's to act on) and any other event. */
export declare function reconnectAfterMs(event: { type?: unknown; payload?: unknown } | null | undefined): number | null;
/** The topics of `asked` a `forbidden_topic` refusal names (`topics`, or an older server's `topic`). */
export declare function refusedTopics(answer: Answer, asked: readonly string[]): Set<string>;
export declare function ticketUrl(base: string, fetchTicket: () => Promise<string> | string): UrlBuilder;
export declare function tokenUrl(base: string, getToken: () => Promise<string> | string): UrlBuilder;

export declare class RequestFailed extends Error {}

export declare class Backoff {
  constructor(options?: { baseMs?: number; capMs?: number; random?: () => number });
  attempt: number;
  bound(): number;
  next(): number;
  reset(): void;
}

export declare class RecentIds {
  constructor(capacity?: number);
  readonly size: number;
  has(id: string): boolean;
  add(id: string): boolean;
}

/** The event by which the server takes topics away from this user; the client drops them itself. */
export declare const ACCESS_REVOKED: "system.access.revoked";

/** The catalog's `bulk` types (live counters): a skipped `seq` of theirs is no gap. */
export declare const LIVE_COUNTERS: ReadonlySet<string>;

export declare class Reorderer {
  constructor(options?: { holdMs?: number; maxHeld?: number; maxKeys?: number; now?: () => number });
  readonly positions: Map<string, number>;
  push<E extends { id: string; type: string; key?: string; seq?: number }>(event: E): E[];
  overdue(): string[];
  skip(key: string): FanoutEvent[];
  expect(key: string, seq: number): FanoutEvent[];
  /** Drop a key's position and held events (a revoked topic). */
  forget(key: string): void;
}

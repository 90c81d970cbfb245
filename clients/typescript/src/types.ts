/**
 * The wire types of fanout's v1 contract (shared/DESIGN.md, src/fanout/envelope.py), written by hand.
 *
 * Payloads are typed through one map from event type to payload shape (`EventPayloads`). Until the
 * catalog's generated types exist (`fanout schema --typescript`, issue 14), the default map takes any
 * type with any JSON object; the generated file will export its own map, and a service will write
 * `new BatchPublisher<CatalogPayloads>(...)` to get checked types and payloads. Nothing else here changes.
 */

/** A map from event type (`notification.new`) to the shape of its payload. */
export type EventPayloads = object;

/** The default map: any event type, any JSON object as payload (checked at run time only). */
export type AnyPayloads = Record<string, object>;

/** The event types a payload map knows. */
export type EventType<P extends EventPayloads> = keyof P & string;

/** Who receives an event: users, topic subscribers, or everyone, less some connections. */
export interface Target {
  userIds: string[];
  topics: string[];
  broadcast: boolean;
  excludeConnectionIds: string[];
  /** Single connections, e.g. the one tab a domain service answers. */
  connectionIds: string[];
}

/** Optional publisher hints; unknown keys travel as they are. */
export interface Meta {
  source?: string | null;
  traceId?: string | null;
  orderingKey?: string | null;
  seq?: number | null;
  /** ISO-8601 with an offset: the worker drops the event after this instant. */
  expiresAt?: string | null;
  [key: string]: unknown;
}

/** The queue message body, version 1, exactly as the Python publisher writes it. */
export interface QueueBody<T extends string = string, Payload = object> {
  v: 1;
  /** `evt_` + a ULID, unless the caller gave its own id. */
  id: string;
  type: T;
  payload: Payload;
  /** ISO-8601 UTC with milliseconds and `Z`: `2026-02-17T00:00:00.000Z`. */
  sentAt: string;
  target: Target;
  meta: Meta;
}

/** What each recipient's WebSocket receives: one text frame per event (documentation only). */
export interface ClientEnvelope<T extends string = string, Payload = object> {
  v: 1;
  id: string;
  type: T;
  payload: Payload;
  sentAt: string;
  seq?: number;
}

/** What a caller gives to publish one event; at least one of userIds, topics or broadcast. */
export interface EventInput<Payload = object> {
  payload?: Payload;
  userIds?: readonly string[];
  topics?: readonly string[];
  broadcast?: boolean;
  /** Connections that must not receive it, e.g. the tab that caused the change. */
  excludeConnectionIds?: readonly string[];
  /** Single connections to reach, e.g. the tab whose request is being answered. */
  connectionIds?: readonly string[];
  meta?: Meta;
  /** An id of the caller's own (1-128 of `A-Za-z0-9_.:-`); default `evt_` + a new ULID. */
  id?: string;
}

/** A built and validated event, serialized once: what the publishers send. */
export interface PreparedEvent<T extends string = string, Payload = object> {
  readonly body: QueueBody<T, Payload>;
  /** The body as sent to SQS. */
  readonly json: string;
  /** UTF-8 size of `json`, which SQS counts against its limits. */
  readonly bytes: number;
}

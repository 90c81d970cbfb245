/**
 * Builds the v1 queue body exactly as `fanout.publish.build_event` does (`buildEvent`), or with the
 * catalog's version and ordering key as `catalog_event` does (`catalogEvent`), and refuses what the worker
 * would dead-letter: the same type pattern, known domains, non-empty and duplicate-free targets, a
 * revocation's payload and target, and API Gateway's 128 KiB frame limit. Errors carry the worker's own
 * reason codes.
 */

import { Buffer } from "node:buffer";
import { ulid } from "ulid";

import { CATALOG_DEFAULTS, type CatalogDefaults } from "./catalog.js";
import { InvalidEvent } from "./errors.js";
import type { EventInput, Meta, PreparedEvent, QueueBody, Target } from "./types.js";

/** The event domains the worker accepts (`fanout.catalog.DOMAINS`). */
export const DOMAINS: ReadonlySet<string> = new Set([
  "notification",
  "chat",
  "follow",
  "event",
  "organization",
  "activity",
  "user",
  "system",
]);
/** SQS's limit for one message body. */
export const MAX_BODY_BYTES = 1024 * 1024;
/** API Gateway's limit for one WebSocket frame: the envelope each recipient gets. */
export const MAX_FRAME_BYTES = 128 * 1024;

const TYPE_PATTERN = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;
const ID_PATTERN = /^[A-Za-z0-9_.:-]+$/;
/** `kind:id`, as `fanout.envelope.TOPIC_PATTERN`. */
const TOPIC_PATTERN = /^[a-z][a-z0-9_]{0,31}:[A-Za-z0-9_.@=+-][A-Za-z0-9_.:@=+-]{0,127}$/;
/** What SQS takes as a FIFO MessageGroupId, as `fanout.envelope.OrderingKey`. */
const ORDERING_KEY_PATTERN = /^[\x21-\x7e]{1,128}$/;
/** The ISO-8601 forms the worker reads (a date, or a date and time with an optional offset). */
const DATE_TIME = /^(\d{4})-(\d\d)-(\d\d)(?:[Tt ](\d\d):(\d\d)(?::(\d\d)(?:[.,]\d+)?)?(?:[Zz]|[+-]\d\d:?\d\d)?)?$/;
/** A lone surrogate as JSON.stringify escapes it (not after an escaped backslash): the worker's parser refuses it. */
const LONE_SURROGATE = /(?<!\\)(?:\\\\)*\\u[dD][89a-fA-F]/;
/** The type a product publishes to take topics away from users (protocol section 8). */
export const ACCESS_REVOKED = "system.access.revoked";
/** Topics one revocation names at most. */
const MAX_REVOKED_TOPICS = 100;
const LIST_LIMITS = { userIds: 100_000, topics: 1_000, excludeConnectionIds: 10_000, connectionIds: 1_000 } as const;
const KNOWN_META = ["source", "traceId", "orderingKey", "seq", "expiresAt"] as const;

/** A unique, time-sortable event id such as `evt_01JD...`. */
export function newEventId(): string {
  return `evt_${ulid()}`;
}

/** The current time as `2026-02-17T00:00:00.000Z`. */
export function nowIso(): string {
  return new Date().toISOString();
}

/** Build, validate and serialize one event; throws `InvalidEvent` with a reason on bad input. */
export function buildEvent<T extends string, P extends object>(
  type: T,
  input: EventInput<P> = {},
): PreparedEvent<T, P> {
  if (typeof type !== "string" || type.length > 128 || !TYPE_PATTERN.test(type)) {
    throw new InvalidEvent("schema", "type: must be <domain>.<name>[.<name>], lowercase, at most 128");
  }
  const id = input.id ?? newEventId();
  if (typeof id !== "string" || id.length > 128 || !ID_PATTERN.test(id)) {
    throw new InvalidEvent("schema", "id: 1-128 characters of A-Z a-z 0-9 _ . : -");
  }
  const payload = input.payload ?? ({} as P);
  if (!isPlainObject(payload)) throw new InvalidEvent("schema", "payload: must be a JSON object");
  const broadcast = input.broadcast ?? false;
  if (typeof broadcast !== "boolean") throw new InvalidEvent("schema", "target.broadcast: must be a boolean");
  const target: Target = {
    userIds: names("userIds", input.userIds),
    topics: names("topics", input.topics),
    broadcast,
    excludeConnectionIds: names("excludeConnectionIds", input.excludeConnectionIds),
    connectionIds: names("connectionIds", input.connectionIds),
  };
  const meta = buildMeta(input.meta);

  if (!DOMAINS.has(type.slice(0, type.indexOf(".")))) {
    throw new InvalidEvent("unknown_domain", `type ${JSON.stringify(type)}`);
  }
  if (target.userIds.length === 0 && target.topics.length === 0 && target.connectionIds.length === 0 && !target.broadcast) {
    throw new InvalidEvent("empty_target", "no userIds, topics, connectionIds or broadcast");
  }
  if (type === ACCESS_REVOKED) checkRevocation(payload, target);

  const payloadJson = toJson("payload", payload);
  const sentAt = nowIso();
  const head = `{"v":1,"id":${JSON.stringify(id)},"type":${JSON.stringify(type)},"payload":${payloadJson},"sentAt":"${sentAt}"`;
  // The frame as the worker writes it (QueueBody.client_frame): seq, key and a payload version other than 1.
  const version = meta.payloadVersion;
  const frame =
    `${head}${meta.seq == null ? "" : `,"seq":${meta.seq}`}` +
    `${meta.orderingKey == null ? "" : `,"key":${JSON.stringify(meta.orderingKey)}`}` +
    `${version == null || version === 1 ? "" : `,"payloadVersion":${String(version)}`}}`;
  if (Buffer.byteLength(frame) > MAX_FRAME_BYTES) {
    throw new InvalidEvent("too_large", `client frame over ${MAX_FRAME_BYTES} bytes`);
  }
  let json = `${head},"target":${JSON.stringify(target)},"meta":${toJson("meta", meta)}}`;
  if (LONE_SURROGATE.test(json)) throw new InvalidEvent("schema", "a string holds a lone surrogate (not UTF-8)");
  // SQS refuses U+FFFE and U+FFFF in a message; escaped, they reach the payload unchanged (as in to_json).
  json = json.replace(/[\uFFFE\uFFFF]/g, (c) => (c === "\uFFFE" ? "\\ufffe" : "\\uffff"));
  const bytes = Buffer.byteLength(json);
  if (bytes > MAX_BODY_BYTES) throw new InvalidEvent("too_large", `body over ${MAX_BODY_BYTES} bytes`);

  const body: QueueBody<T, P> = { v: 1, id, type, payload, sentAt, target, meta };
  return { body, json, bytes };
}

/**
 * `buildEvent` with what the catalog says of a catalogued type, as Python's `send_event` builds it
 * (`fanout.publish.catalog_event`): `meta.payloadVersion` is the type's current version, and
 * `meta.orderingKey`, unless the caller gave one, the domain and the payload's ordering fields joined by
 * `:` (`chat:c9`). A type outside the catalog is built as given. Throws `InvalidEvent` as `buildEvent`
 * does, and `payload_schema` when an ordering field is not a non-empty string (a payload that escaped
 * its type, which the worker would dead-letter the same way).
 */
export function catalogEvent<T extends string, P extends object>(
  type: T,
  input: EventInput<P> = {},
): PreparedEvent<T, P> {
  const defaults: CatalogDefaults | undefined = Object.hasOwn(CATALOG_DEFAULTS, type)
    ? (CATALOG_DEFAULTS as Readonly<Record<string, CatalogDefaults>>)[type]
    : undefined;
  if (defaults === undefined || !isPlainObject(input.meta ?? {}) || !isPlainObject(input.payload ?? {})) {
    return buildEvent(type, input); // uncatalogued, or refused there with the reason
  }
  const meta: Meta = { ...input.meta, payloadVersion: defaults.payloadVersion };
  if (meta.orderingKey == null && defaults.orderingKey.length > 0) {
    const payload = (input.payload ?? {}) as Record<string, unknown>;
    const values = defaults.orderingKey.map((field) => payload[field]);
    const bad = values.findIndex((value) => typeof value !== "string" || value.length === 0);
    if (bad >= 0) {
      buildEvent(type, { ...input, meta }); // any other fault first, with its own reason
      const field = defaults.orderingKey[bad] ?? "";
      throw new InvalidEvent("payload_schema", `${type}: payload.${field}: a non-empty string (its ordering key)`);
    }
    meta.orderingKey = [type.slice(0, type.indexOf(".")), ...values].join(":");
  }
  return buildEvent(type, { ...input, meta });
}

/**
 * A `system.access.revoked` event: the worker takes `topics` (1 to 100 `kind:id`, never `user:`) off every
 * connection of `userIds`, then posts the event to each of them. Throws `InvalidEvent` on bad input.
 */
export function revocation(
  userIds: readonly string[],
  topics: readonly string[],
  options: { id?: string } = {},
): PreparedEvent<typeof ACCESS_REVOKED, { topics: string[] }> {
  if (!Array.isArray(topics)) throw new InvalidEvent("payload_schema", "payload.topics: must be an array");
  return buildEvent(ACCESS_REVOKED, { userIds, payload: { topics: [...topics] }, meta: { payloadVersion: 1 }, ...options });
}

/** What the worker refuses in a revocation: a target beyond userIds, topics not 1-100 `kind:id`, a `user:` topic. */
function checkRevocation(payload: object, target: Target): void {
  if (target.topics.length || target.connectionIds.length || target.broadcast || target.excludeConnectionIds.length) {
    throw new InvalidEvent("bad_target", `${ACCESS_REVOKED} targets userIds only (no topics, connectionIds, broadcast or excludeConnectionIds)`);
  }
  const topics = (payload as { topics?: unknown }).topics;
  if (!Array.isArray(topics) || topics.length < 1 || topics.length > MAX_REVOKED_TOPICS) {
    throw new InvalidEvent("payload_schema", `payload.topics: a list of 1 to ${MAX_REVOKED_TOPICS} topics`);
  }
  for (const topic of topics) {
    if (typeof topic !== "string" || !TOPIC_PATTERN.test(topic)) {
      throw new InvalidEvent("payload_schema", "payload.topics: entries are kind:id (organization:7, conversation:c9)");
    }
    if (topic.startsWith("user:")) {
      throw new InvalidEvent("payload_schema", "payload.topics: a user: topic cannot be revoked");
    }
  }
}

function isPlainObject(value: unknown): value is object {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function names(field: keyof typeof LIST_LIMITS, values: readonly string[] | undefined): string[] {
  if (values === undefined) return [];
  if (!Array.isArray(values)) throw new InvalidEvent("schema", `target.${field}: must be an array`);
  if (values.length > LIST_LIMITS[field]) {
    throw new InvalidEvent("schema", `target.${field}: at most ${LIST_LIMITS[field]} entries`);
  }
  for (const value of values) {
    // Python counts code points, not UTF-16 units.
    if (typeof value !== "string" || value.length === 0 || [...value].length > 256) {
      throw new InvalidEvent("schema", `target.${field}: entries are strings of 1-256 characters`);
    }
    if (field === "topics" && !TOPIC_PATTERN.test(value)) {
      throw new InvalidEvent("schema", "target.topics: entries are kind:id (user:u1, conversation:c9)");
    }
  }
  if (new Set(values).size !== values.length) {
    throw new InvalidEvent("duplicate_target", `target.${field}: duplicate entries`);
  }
  return [...values];
}

/** The meta object in the Python publisher's shape: the known keys first (null when unset), then extras. */
function buildMeta(given: Meta | undefined): Meta {
  const source = given ?? {};
  if (!isPlainObject(source)) throw new InvalidEvent("schema", "meta: must be a JSON object");
  for (const key of ["source", "traceId", "orderingKey"] as const) {
    const value = source[key];
    if (value != null && typeof value !== "string") throw new InvalidEvent("schema", `meta.${key}: must be a string`);
  }
  const { orderingKey, seq, expiresAt, payloadVersion } = source;
  if (orderingKey != null && !ORDERING_KEY_PATTERN.test(orderingKey)) {
    throw new InvalidEvent("schema", "meta.orderingKey: 1-128 printable ASCII characters, no space");
  }
  if (seq != null && !(Number.isSafeInteger(seq) && seq >= 0)) {
    throw new InvalidEvent("schema", "meta.seq: must be an integer >= 0");
  }
  if (expiresAt != null && (typeof expiresAt !== "string" || !isDateTime(expiresAt))) {
    throw new InvalidEvent("schema", "meta.expiresAt: must be an ISO-8601 date-time");
  }
  const version = payloadVersion as unknown;
  if (version != null && !(Number.isSafeInteger(version) && (version as number) >= 1 && (version as number) <= 1000)) {
    throw new InvalidEvent("schema", "meta.payloadVersion: must be an integer from 1 to 1000");
  }
  const meta: Record<string, unknown> = {};
  for (const key of KNOWN_META) meta[key] = source[key] ?? null;
  if (version != null) meta.payloadVersion = version; // after the known keys as Python writes it; absent when unset
  for (const [key, value] of Object.entries(source)) {
    if (!(KNOWN_META as readonly string[]).includes(key) && key !== "payloadVersion") meta[key] = value;
  }
  return meta as Meta;
}

/** A date or date-time the worker's parser takes: the ISO-8601 form, and a day, hour and minute that exist. */
function isDateTime(value: string): boolean {
  const match = DATE_TIME.exec(value);
  if (match === null) return false;
  const [year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0] = match.slice(1).map((part) => Number(part ?? 0));
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  const real = date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
  return real && year >= 1 && hour < 24 && minute < 60 && second < 60;
}

function toJson(field: string, value: object): string {
  let json: string;
  try {
    json = JSON.stringify(value);
  } catch (error) {
    // BigInt values and cycles cannot travel as JSON.
    throw new InvalidEvent("schema", `${field}: not JSON-serializable (${(error as Error).message.slice(0, 100)})`);
  }
  // JSON.stringify writes NaN and ±Infinity as null, where Python's publisher refuses them: look for
  // them, with a replacer (about 3× the cost), only when a null was written.
  if (json.includes("null")) JSON.stringify(value, refuseNonFinite(field));
  return json;
}

function refuseNonFinite(field: string): (key: string, value: unknown) => unknown {
  return (_key, value) => {
    if (typeof value === "number" && !Number.isFinite(value)) {
      throw new InvalidEvent("schema", `${field} holds a number out of JSON's range`);
    }
    return value;
  };
}

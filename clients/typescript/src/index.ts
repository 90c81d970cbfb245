/** @fanout/publisher: publish fanout v1 events to SQS from Node services. */

export { BatchPublisher } from "./batch.js";
export { CATALOG_DEFAULTS } from "./catalog.js";
export {
  ACCESS_REVOKED,
  buildEvent,
  catalogEvent,
  DOMAINS,
  MAX_BODY_BYTES,
  MAX_FRAME_BYTES,
  newEventId,
  nowIso,
  revocation,
} from "./envelope.js";
export { BufferFullError, FanoutError, InvalidEvent, PublisherClosedError } from "./errors.js";
export { Publisher } from "./publisher.js";
export type { BatchOptions, BatchStats, PublishFailure } from "./options.js";
export type { SqsOptions } from "./sqs.js";
export type * from "./types.js";
export type * from "./catalog.js";

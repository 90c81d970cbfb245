/** The batch publisher's options, counters and failure reports. */

import type { SqsOptions } from "./sqs.js";

export interface BatchOptions extends SqsOptions {
  /** How long a partial batch waits for more events (default 10 ms). */
  lingerMs?: number;
  /** Events the buffer holds, not counting those being sent (default 10,000). */
  maxBufferedEvents?: number;
  /** How long `publish` waits for room in a full buffer before it throws `BufferFullError` (default 100 ms). */
  maxBlockMs?: number;
  /** Bytes of message bodies per SendMessageBatch call (default 256 KiB; SQS allows up to 1 MiB). */
  maxBatchBytes?: number;
  /** SendMessageBatch calls in flight at once (default 4). */
  maxConcurrentBatches?: number;
  /** Sends of one event, the first included, before it is reported failed (default 5). */
  maxAttempts?: number;
  /** The first retry's delay, doubled at each further one up to 5 s (default 100 ms). */
  retryDelayMs?: number;
  /** Flush on `beforeExit`, and on the signals below before the process exits (default true). */
  flushOnExit?: boolean;
  /** Default SIGTERM and SIGINT. */
  exitSignals?: NodeJS.Signals[];
  /** How long the flush on a signal may take before what is left is reported failed (default 10 s). */
  shutdownTimeoutMs?: number;
  /** Told of each event that could not be sent; default: one line on stderr (no payload). */
  onFailure?: (failure: PublishFailure) => void;
}

/** An event that was taken by `publish` but is not in the queue. */
export interface PublishFailure {
  id: string;
  type: string;
  /** SQS's error code (`InternalError`, `ServiceUnavailable`...), or `CloseTimeout`. */
  code: string;
  message: string;
  attempts: number;
}

export interface BatchStats {
  buffered: number;
  inFlight: number;
  sent: number;
  failed: number;
  /** SendMessageBatch calls made, retries included. */
  batches: number;
  /** Entries sent again after a failure. */
  retried: number;
}

/** The errors a publisher throws; all are `FanoutError`s. */

export class FanoutError extends Error {
  override name = "FanoutError";
}

/** Bad input, refused before anything is sent. `reason` uses the worker's dead-letter reasons. */
export class InvalidEvent extends FanoutError {
  override name = "InvalidEvent";

  constructor(
    readonly reason:
      | "schema"
      | "unknown_domain"
      | "empty_target"
      | "duplicate_target"
      | "bad_target"
      | "payload_schema"
      | "too_large",
    detail: string,
  ) {
    super(`invalid event (${reason}): ${detail}`);
  }
}

/** The batch publisher's buffer stayed full for `maxBlockMs`: the event was not taken. */
export class BufferFullError extends FanoutError {
  override name = "BufferFullError";
}

/** `publish` after `close()`: the event was not taken. */
export class PublisherClosedError extends FanoutError {
  override name = "PublisherClosedError";
}

/** The simple publisher: one `SendMessage` per event, awaited by the caller. */

import { SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";

import { catalogEvent, revocation } from "./envelope.js";
import { PublisherClosedError } from "./errors.js";
import { fifoFields, openClient, type SqsOptions } from "./sqs.js";
import type { AnyPayloads, EventInput, EventPayloads, EventType, PreparedEvent } from "./types.js";

/**
 * Sends each event at once and resolves with its id when SQS has it. Create one per process and reuse
 * it; use `BatchPublisher` in request paths, where the send should not add its latency.
 */
export class Publisher<P extends EventPayloads = AnyPayloads> {
  readonly queueUrl: string;
  private readonly client: SQSClient;
  private readonly owned: boolean;
  private closed = false;

  constructor(options: SqsOptions) {
    this.queueUrl = options.queueUrl;
    ({ client: this.client, owned: this.owned } = openClient(options));
  }

  /**
   * Build, validate and send one event; resolves with its id. A catalogued type gets the catalog's
   * `meta.payloadVersion` and `meta.orderingKey` (`catalogEvent`). Throws `InvalidEvent` on bad input.
   */
  async publish<T extends EventType<P>>(type: T, input: EventInput<P[T] & object> = {}): Promise<string> {
    return this.send(catalogEvent(type, input));
  }

  /** Send an event built with `buildEvent` or `catalogEvent`; resolves with its id. */
  async send(event: PreparedEvent): Promise<string> {
    if (this.closed) throw new PublisherClosedError("publish after close()");
    const { id, meta } = event.body;
    const fifo = fifoFields(this.queueUrl, id, meta.orderingKey);
    await this.client.send(new SendMessageCommand({ QueueUrl: this.queueUrl, MessageBody: event.json, ...fifo }));
    return event.body.id;
  }

  /** Take `topics` away from `userIds` live (a `system.access.revoked`); resolves with its id. */
  async revokeTopics(userIds: readonly string[], topics: readonly string[]): Promise<string> {
    return this.send(revocation(userIds, topics));
  }

  /** Release the client (unless it was the caller's own). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.owned) this.client.destroy();
  }
}

/** Where events go, the SQS client that takes them there (AWS SDK v3), and the batch call. */

import { SendMessageBatchCommand, SendMessageCommand, SQSClient, type SQSClientConfig } from "@aws-sdk/client-sqs";

export interface SqsOptions {
  /** The queue's URL (`FANOUT_QUEUE_URL`), e.g. `http://127.0.0.1:9324/123456789012/fanout-events` locally. */
  queueUrl: string;
  /** An endpoint other than AWS's own, e.g. `http://127.0.0.1:9324` for `fanout dev`. */
  endpoint?: string;
  /** The AWS region; default: the SDK's own resolution (`AWS_REGION`, the config file). */
  region?: string;
  /** A client of the service's own; then `close()` leaves it open. */
  client?: SQSClient;
  /** More settings for the client this package creates (credentials, maxAttempts, requestHandler...). */
  clientConfig?: SQSClientConfig;
  /**
   * How long one call to SQS may take, connecting included, before it fails with `TimeoutError` (and the
   * SDK tries again, up to its `maxAttempts`); default 10 s, the Python publishers' read timeout. Applies to
   * the client this package creates, unless `clientConfig.requestHandler` is given.
   */
  timeoutMs?: number;
}

/** One call's bound by default: the SDK's own is its socket's 15 minutes of silence. */
export const DEFAULT_TIMEOUT_MS = 10_000;

/** The client to use and whether `close()` must destroy it. */
export function openClient(options: SqsOptions): { client: SQSClient; owned: boolean } {
  if (options.client) return { client: options.client, owned: false };
  const config: SQSClientConfig = { ...options.clientConfig };
  if (config.requestHandler === undefined) {
    // Without a bound an SQS that takes the connection and never answers held each call for the SDK's
    // 15 minutes of socket silence, every attempt: a send, a flush and a close without timeoutMs hung.
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    config.requestHandler = {
      connectionTimeout: Math.min(2_000, timeoutMs),
      requestTimeout: timeoutMs,
      throwOnRequestTimeout: true,
    };
  }
  if (options.endpoint !== undefined) config.endpoint = options.endpoint;
  if (options.region !== undefined) config.region = options.region;
  return { client: new SQSClient(config), owned: true };
}

/**
 * A FIFO queue's fields for one event, as the Python publishers send them: its group is its ordering key
 * (else its id) and its deduplication id its id; nothing for a standard queue (SQS refuses a FIFO send
 * without a group).
 */
export function fifoFields(
  queueUrl: string,
  id: string,
  orderingKey: string | null | undefined,
): { MessageGroupId?: string; MessageDeduplicationId?: string } {
  if (!queueUrl.endsWith(".fifo")) return {};
  return { MessageGroupId: orderingKey || id, MessageDeduplicationId: id };
}

/** SendMessageBatch takes at most 10 entries. */
export const MAX_BATCH_ENTRIES = 10;

/** Why an entry was not sent, and whether sending it again can help. */
export interface Failure {
  code: string;
  message: string;
  permanent: boolean;
}

/**
 * SQS's answers to a message it will never take, whoever sends it and however often: too large for the
 * queue, or text it refuses (`fanout.publish.batch.CONTENT_REFUSED`). Every other client error (a missing
 * queue, a KMS key or grant, access denied) is the queue's, and the event is sent again.
 */
const CONTENT_REFUSED: ReadonlySet<string> = new Set(["InvalidParameterValue", "InvalidMessageContents"]);
/** SQS's answers to a SendMessageBatch it refuses as a request, whatever its messages: they can go one by one. */
const BATCH_REFUSED: ReadonlySet<string> = new Set(
  ["BatchRequestTooLong", "TooManyEntriesInBatchRequest", "BatchEntryIdsNotDistinct", "InvalidBatchEntryId"].flatMap(
    (code) => [code, `AWS.SimpleQueueService.${code}`],
  ),
);

/**
 * One SendMessageBatch call (with the SDK's own retries); returns the entries that failed and why. A call
 * SQS refuses whole for its shape or for one message's content goes again one SendMessage per entry, so
 * the good entries are sent and only the bad one fails for good.
 */
export async function sendBatchOnce<E extends { id: string; orderingKey: string | null; json: string }>(
  client: SQSClient,
  queueUrl: string,
  entries: readonly E[],
  abortSignal: AbortSignal,
): Promise<Map<E, Failure>> {
  const failures = new Map<E, Failure>();
  try {
    const reply = await client.send(
      new SendMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: entries.map((entry, index) => ({
          Id: String(index),
          MessageBody: entry.json,
          ...fifoFields(queueUrl, entry.id, entry.orderingKey),
        })),
      }),
      { abortSignal },
    );
    const ok = new Set((reply.Successful ?? []).map((s) => s.Id));
    const failed = new Map((reply.Failed ?? []).map((f) => [f.Id, f]));
    entries.forEach((entry, index) => {
      if (ok.has(String(index))) return;
      const f = failed.get(String(index));
      const code = f?.Code ?? "MissingFromReply";
      failures.set(entry, {
        code,
        message: f?.Message ?? "the reply named the entry neither Successful nor Failed",
        permanent: f?.SenderFault === true && CONTENT_REFUSED.has(code), // the body itself: sending it again cannot help
      });
    });
  } catch (error) {
    const failure = describe(error);
    if (!refusedAsBatch(error)) {
      for (const entry of entries) failures.set(entry, failure);
      return failures;
    }
    for (const entry of entries) {
      try {
        const fifo = fifoFields(queueUrl, entry.id, entry.orderingKey);
        await client.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: entry.json, ...fifo }), { abortSignal });
      } catch (single) {
        failures.set(entry, describe(single));
      }
    }
  }
  return failures;
}

/** The codes an SDK error carries: its name, and the query-protocol code SQS also sends. */
function codesOf(error: unknown): string[] {
  const e = error as { name?: unknown; Code?: unknown };
  return [e.name, e.Code].filter((code): code is string => typeof code === "string");
}

/** SQS refused a whole SendMessageBatch for its shape or for a message's content (HTTP 400). */
function refusedAsBatch(error: unknown): boolean {
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  return status === 400 && codesOf(error).some((code) => BATCH_REFUSED.has(code) || CONTENT_REFUSED.has(code));
}

/** An SDK error as a failure; permanent only when SQS refused the message for its content. */
function describe(error: unknown): Failure {
  const e = error as { name?: unknown; code?: unknown; message?: unknown; $fault?: unknown };
  const name = typeof e.name === "string" && e.name !== "Error" ? e.name : undefined;
  return {
    code: name ?? (typeof e.code === "string" ? e.code : "Error"), // ECONNREFUSED and the like
    message: String(e.message ?? error).slice(0, 300),
    permanent: e.$fault === "client" && codesOf(error).some((code) => CONTENT_REFUSED.has(code)),
  };
}

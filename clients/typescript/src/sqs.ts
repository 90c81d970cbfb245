/** Where events go, the SQS client that takes them there (AWS SDK v3), and the batch call. */

import { SendMessageBatchCommand, SQSClient, type SQSClientConfig } from "@aws-sdk/client-sqs";

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
}

/** The client to use and whether `close()` must destroy it. */
export function openClient(options: SqsOptions): { client: SQSClient; owned: boolean } {
  if (options.client) return { client: options.client, owned: false };
  const config: SQSClientConfig = { ...options.clientConfig };
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

/** One SendMessageBatch call (with the SDK's own retries); returns the entries that failed and why. */
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
      failures.set(entry, {
        code: f?.Code ?? "MissingFromReply",
        message: f?.Message ?? "the reply named the entry neither Successful nor Failed",
        permanent: f?.SenderFault === true, // SQS's word that sending the same entry again cannot help
      });
    });
  } catch (error) {
    const failure = describe(error);
    for (const entry of entries) failures.set(entry, failure);
  }
  return failures;
}

/** An SDK error as a failure; only a client fault that SQS does not call retryable is permanent. */
function describe(error: unknown): Failure {
  const e = error as { name?: unknown; code?: unknown; message?: unknown; $fault?: unknown; $retryable?: unknown };
  const name = typeof e.name === "string" && e.name !== "Error" ? e.name : undefined;
  return {
    code: name ?? (typeof e.code === "string" ? e.code : "Error"), // ECONNREFUSED and the like
    message: String(e.message ?? error).slice(0, 300),
    permanent: e.$fault === "client" && !e.$retryable,
  };
}

/**
 * The batch publisher for request paths: `publish` validates the event, puts it in a bounded buffer and
 * returns; the publisher sends the buffer with SendMessageBatch (at most 10 entries and `maxBatchBytes`
 * per call), at once when a batch is full and after `lingerMs` otherwise. Entries that fail within a
 * batch, and calls that fail whole, are retried with backoff up to `maxAttempts`; an event that still
 * fails, or that SQS refuses for good, goes to `onFailure`, never silently away. The buffer is flushed
 * by `flush()`, `close()`, and on process exit (see exit.ts). On a FIFO queue a batch passes over the
 * events whose message group a batch being sent carries and takes later events of other groups, so a
 * group's batches go one after the other, in the order the events were published, while other groups go
 * beside them, as the Python background publishers send them.
 */

import type { SQSClient } from "@aws-sdk/client-sqs";

import { catalogEvent, revocation } from "./envelope.js";
import { BufferFullError, PublisherClosedError } from "./errors.js";
import { installExitHooks } from "./exit.js";
import { Fifo, Groups } from "./fifo.js";
import type { BatchOptions, BatchStats, PublishFailure } from "./options.js";
import { type Failure, MAX_BATCH_ENTRIES, openClient, sendBatchOnce, type SqsOptions } from "./sqs.js";
import type { AnyPayloads, EventInput, EventPayloads, EventType, PreparedEvent } from "./types.js";

interface Entry {
  readonly id: string;
  readonly type: string;
  /** Its FIFO message group, when it has one (else its id). */
  readonly orderingKey: string | null;
  readonly json: string;
  readonly bytes: number;
  readonly bufferedAt: number;
  attempts: number;
}

interface Waiter {
  resolve: () => void;
  reject: (error: Error) => void;
}

/** Buffers events and sends them in batches; create one per process, `close()` it on shutdown. */
export class BatchPublisher<P extends EventPayloads = AnyPayloads> {
  readonly queueUrl: string;
  private readonly client: SQSClient;
  private readonly owned: boolean;
  private readonly opt: Required<Omit<BatchOptions, keyof SqsOptions>>;
  private readonly buffer: Fifo<Entry> | Groups<Entry>; // on a FIFO queue, by message group
  private readonly inFlight = new Set<Entry>(); // taken from the buffer, not yet settled
  private readonly spaceWaiters: Waiter[] = [];
  private readonly idleWaiters: (() => void)[] = [];
  private readonly sleepers = new Set<() => void>();
  private readonly aborter = new AbortController(); // stops calls, and the SDK's retries, at a close timeout
  private readonly counts = { sent: 0, failed: 0, batches: 0, retried: 0 };
  private reserved = 0; // room promised to woken waiters that have not pushed yet
  private activeBatches = 0;
  private forcing = 0; // flushes in progress: partial batches go at once
  private timer: NodeJS.Timeout | undefined;
  private pumpScheduled = false;
  private abandoned = false;
  private closing: Promise<BatchStats> | undefined;
  private readonly removeExitHooks: () => void = () => undefined;

  constructor(options: BatchOptions) {
    this.queueUrl = options.queueUrl;
    this.buffer = options.queueUrl.endsWith(".fifo") ? new Groups<Entry>(groupOf) : new Fifo<Entry>();
    ({ client: this.client, owned: this.owned } = openClient(options));
    this.opt = {
      lingerMs: options.lingerMs ?? 10,
      maxBufferedEvents: options.maxBufferedEvents ?? 10_000,
      maxBlockMs: options.maxBlockMs ?? 100,
      maxBatchBytes: options.maxBatchBytes ?? 256 * 1024,
      maxConcurrentBatches: options.maxConcurrentBatches ?? 4,
      maxAttempts: options.maxAttempts ?? 5,
      retryDelayMs: options.retryDelayMs ?? 100,
      flushOnExit: options.flushOnExit ?? true,
      exitSignals: options.exitSignals ?? ["SIGTERM", "SIGINT"],
      shutdownTimeoutMs: options.shutdownTimeoutMs ?? 10_000,
      onFailure: options.onFailure ?? logFailure,
    };
    if (this.opt.flushOnExit) {
      this.removeExitHooks = installExitHooks({
        hasWork: () => this.buffer.length > 0,
        flush: () => this.flush(),
        shutdown: () => this.close({ timeoutMs: this.opt.shutdownTimeoutMs }),
        signals: this.opt.exitSignals,
      });
    }
  }

  /**
   * Build and validate one event and buffer it; resolves with its id once buffered (not yet sent). A
   * catalogued type gets the catalog's `meta.payloadVersion` and `meta.orderingKey` (`catalogEvent`).
   * Throws `InvalidEvent` on bad input, `BufferFullError` after `maxBlockMs` of a full buffer.
   */
  async publish<T extends EventType<P>>(type: T, input: EventInput<P[T] & object> = {}): Promise<string> {
    return this.enqueue(catalogEvent(type, input));
  }

  /** Take `topics` away from `userIds` live (a `system.access.revoked`); resolves with its id once buffered. */
  async revokeTopics(userIds: readonly string[], topics: readonly string[]): Promise<string> {
    return this.enqueue(revocation(userIds, topics));
  }

  /** Buffer an event built with `buildEvent` or `catalogEvent`; resolves with its id. */
  async enqueue(event: PreparedEvent): Promise<string> {
    if (this.closing) throw new PublisherClosedError("publish after close()");
    if (this.spaceWaiters.length > 0 || this.buffer.length + this.reserved >= this.opt.maxBufferedEvents) {
      await this.waitForSpace();
      this.reserved -= 1;
    }
    const { id, type, meta } = event.body;
    const orderingKey = meta.orderingKey ?? null;
    this.buffer.push({ id, type, orderingKey, json: event.json, bytes: event.bytes, bufferedAt: performance.now(), attempts: 0 });
    if (this.forcing > 0 || this.batchReady()) this.schedulePump();
    else this.armTimer();
    return id;
  }

  /** Send everything buffered now, without waiting for the linger; resolves when all is settled. */
  async flush(): Promise<void> {
    this.forcing += 1;
    try {
      this.pump();
      await new Promise<void>((resolve) => {
        this.idleWaiters.push(resolve);
        this.checkIdle();
      });
    } finally {
      this.forcing -= 1;
    }
  }

  /**
   * Refuse new events, send what is buffered, release the client. With `timeoutMs`, events not confirmed
   * sent by then are reported to `onFailure` with the code `CloseTimeout`. Safe to call twice: a later
   * call's `timeoutMs` bounds a close already under way (a signal's, after the service's own `close()`).
   */
  close(options: { timeoutMs?: number } = {}): Promise<BatchStats> {
    const { timeoutMs } = options;
    if (this.closing === undefined) this.closing = this.shutdown(timeoutMs);
    else if (timeoutMs !== undefined) {
      void within(this.closing, timeoutMs).then((done) => {
        if (!done) this.abandon();
      });
    }
    return this.closing;
  }

  /** Counters since the publisher was created. */
  stats(): BatchStats {
    return { buffered: this.buffer.length, inFlight: this.inFlight.size, ...this.counts };
  }

  private async shutdown(timeoutMs: number | undefined): Promise<BatchStats> {
    for (const waiter of this.spaceWaiters.splice(0)) waiter.reject(new PublisherClosedError("closed while waiting"));
    const flushed = this.flush();
    if (timeoutMs === undefined) await flushed;
    else if (!(await within(flushed, timeoutMs))) this.abandon();
    this.removeExitHooks();
    clearTimeout(this.timer);
    if (this.owned) this.client.destroy();
    return this.stats();
  }

  private waitForSpace(): Promise<void> {
    const { maxBlockMs, maxBufferedEvents } = this.opt;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.spaceWaiters.splice(this.spaceWaiters.indexOf(waiter), 1);
        reject(new BufferFullError(`buffer full (${maxBufferedEvents} events) for ${maxBlockMs} ms`));
      }, maxBlockMs);
      const waiter: Waiter = {
        resolve: () => (clearTimeout(timer), resolve()),
        reject: (error) => (clearTimeout(timer), reject(error)),
      };
      this.spaceWaiters.push(waiter);
    });
  }

  private wakeWaiters(): void {
    while (this.spaceWaiters.length > 0 && this.buffer.length + this.reserved < this.opt.maxBufferedEvents) {
      this.reserved += 1;
      this.spaceWaiters.shift()?.resolve();
    }
  }

  /** Whether the front of the buffer fills a batch, by count or by bytes (on a FIFO queue, the events
   * whose group has no batch being sent). */
  private batchReady(): boolean {
    if (this.buffer instanceof Groups) {
      return this.buffer.ready >= MAX_BATCH_ENTRIES || this.buffer.readyBytes > this.opt.maxBatchBytes;
    }
    if (this.buffer.length >= MAX_BATCH_ENTRIES) return true;
    let bytes = 0;
    for (let i = 0; i < this.buffer.length; i += 1) {
      bytes += this.buffer.at(i).bytes;
      if (bytes > this.opt.maxBatchBytes) return true;
    }
    return false;
  }

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => this.pump()); // the send's own work stays out of the caller's publish
  }

  private pump(): void {
    this.pumpScheduled = false;
    const now = performance.now();
    while (this.buffer.length > 0 && this.activeBatches < this.opt.maxConcurrentBatches) {
      const next = this.next();
      if (next === undefined) break; // each buffered group has a batch being sent; the first to end pumps
      const due = this.forcing > 0 || this.batchReady() || now - next.bufferedAt >= this.opt.lingerMs;
      if (!due) break;
      this.startBatch(this.takeBatch());
    }
    this.armTimer();
    this.checkIdle();
  }

  private armTimer(): void {
    if (this.timer !== undefined || this.buffer.length === 0) return;
    if (this.activeBatches >= this.opt.maxConcurrentBatches) return; // a finishing batch pumps again
    const next = this.next();
    if (next === undefined) return; // so does the first batch to end, when every buffered group is being sent
    const wait = Math.max(1, next.bufferedAt + this.opt.lingerMs - performance.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, wait);
    this.timer.unref(); // a linger never keeps the process alive: beforeExit flushes instead
  }

  /** The oldest buffered event that may go now (on a FIFO queue, whose group has no batch being sent). */
  private next(): Entry | undefined {
    if (this.buffer instanceof Groups) return this.buffer.peek();
    return this.buffer.length > 0 ? this.buffer.at(0) : undefined;
  }

  private takeBatch(): Entry[] {
    let batch: Entry[] = [];
    if (this.buffer instanceof Groups) {
      batch = this.buffer.take(MAX_BATCH_ENTRIES, this.opt.maxBatchBytes); // its groups held until it ends
      for (const entry of batch) this.inFlight.add(entry);
    } else {
      let bytes = 0;
      while (batch.length < MAX_BATCH_ENTRIES && this.buffer.length > 0) {
        const next = this.buffer.at(0);
        if (batch.length > 0 && bytes + next.bytes > this.opt.maxBatchBytes) break;
        this.buffer.shift();
        this.inFlight.add(next);
        batch.push(next);
        bytes += next.bytes;
      }
    }
    this.wakeWaiters();
    return batch;
  }

  private startBatch(batch: Entry[]): void {
    this.activeBatches += 1;
    void this.sendBatch(batch).finally(() => {
      this.activeBatches -= 1;
      if (this.buffer instanceof Groups) {
        this.buffer.release(batch);
        clearTimeout(this.timer); // an older event may go now: the linger to wait for is its own
        this.timer = undefined;
      }
      this.pump();
    });
  }

  /** Send one batch, retrying the entries that failed; never rejects. */
  private async sendBatch(batch: Entry[]): Promise<void> {
    let pending = batch;
    while (pending.length > 0 && !this.abandoned) {
      for (const entry of pending) entry.attempts += 1;
      this.counts.batches += 1;
      const failures = await sendBatchOnce(this.client, this.queueUrl, pending, this.aborter.signal);
      const retry: Entry[] = [];
      for (const entry of pending) {
        const failure = failures.get(entry);
        if (failure === undefined) this.settle(entry);
        else if (failure.permanent || entry.attempts >= this.opt.maxAttempts) this.settle(entry, failure);
        else retry.push(entry);
      }
      if (retry.length > 0) {
        this.counts.retried += retry.length;
        await this.sleep(this.backoff(retry[0]?.attempts ?? 1));
      }
      pending = retry;
    }
  }

  private settle(entry: Entry, failure?: Failure): void {
    if (!this.inFlight.delete(entry)) return; // already reported at a close timeout
    if (failure === undefined) {
      this.counts.sent += 1;
      return;
    }
    this.fail(entry, failure);
  }

  private fail(entry: Entry, failure: Failure): void {
    this.counts.failed += 1;
    const { id, type, attempts } = entry;
    try {
      this.opt.onFailure({ id, type, code: failure.code, message: failure.message, attempts });
    } catch (error) {
      process.emitWarning(`fanout publisher: onFailure threw: ${String(error)}`);
    }
  }

  /** At a close timeout: report everything not confirmed sent, and stop retrying. */
  private abandon(): void {
    this.abandoned = true;
    this.aborter.abort();
    const timeout = { code: "CloseTimeout", message: "not confirmed sent within the close timeout", permanent: true };
    for (const entry of this.buffer.drain()) this.fail(entry, timeout);
    for (const entry of [...this.inFlight]) this.settle(entry, timeout);
    for (const wake of this.sleepers) wake();
    this.checkIdle();
  }

  private checkIdle(): void {
    const idle = this.buffer.length === 0 && this.reserved === 0 && (this.activeBatches === 0 || this.abandoned);
    if (idle) for (const resolve of this.idleWaiters.splice(0)) resolve();
  }

  private backoff(attempt: number): number {
    const ceiling = Math.min(5_000, this.opt.retryDelayMs * 2 ** (attempt - 1));
    return ceiling / 2 + Math.random() * (ceiling / 2); // jitter, so retrying publishers spread out
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleepers.add(wake);
    });
  }
}

/** An entry's FIFO message group, as `fifoFields` names it: its ordering key, else its id. */
function groupOf(entry: Entry): string {
  return entry.orderingKey || entry.id;
}

function logFailure(failure: PublishFailure): void {
  const { id, type, code, attempts } = failure;
  console.error(`fanout publisher: event ${id} (${type}) not sent after ${attempts} attempt(s): ${code}`);
}

/** Whether `promise` settled within `ms`. */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

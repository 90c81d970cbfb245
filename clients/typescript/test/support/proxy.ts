/**
 * A real HTTP proxy between the SDK and the local SQS (moto), which records every call and injects the
 * faults SQS shows and moto never does: an entry that fails within a batch (dropped from the forwarded
 * request and answered in `Failed`, as SQS answers a partial failure), and a call that fails whole (503),
 * at once or after hanging a while.
 * It speaks the AWS JSON 1.0 protocol the SDK v3 SQS client uses; anything else fails the test loudly.
 */

import { Buffer } from "node:buffer";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";

export interface Call {
  /** `SendMessage`, `SendMessageBatch`... */
  action: string;
  /** The event ids of the entries the publisher sent. */
  eventIds: string[];
  /** Those this proxy failed. */
  failedIds: string[];
  /** Bytes of message bodies in the call. */
  bodyBytes: number;
  status: number;
  /** When the call arrived (`performance.now()`; the tests run in the same process). */
  at: number;
}

interface EntryFault {
  times: number;
  senderFault: boolean;
}

export class SqsProxy {
  readonly calls: Call[] = [];
  private readonly entryFaults = new Map<string, EntryFault>();
  private callFaults = 0;
  private callFaultDelayMs = 0;
  private readonly stopping = new AbortController(); // ends a hanging call when the proxy closes

  private constructor(
    private readonly server: http.Server,
    private readonly upstream: URL,
  ) {}

  /** Start on a free port of 127.0.0.1, forwarding to `upstream` (the SQS endpoint). */
  static async start(upstream: string): Promise<SqsProxy> {
    const server = http.createServer();
    const proxy = new SqsProxy(server, new URL(upstream));
    server.on("request", (req, res) => {
      proxy.handle(req, res).catch((error: unknown) => {
        if (!res.headersSent) res.writeHead(599).end(String(error)); // a proxy bug fails the call, never hangs it
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return proxy;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Fail the entry carrying this event id in its next `times` batches. */
  failEntry(eventId: string, times: number, senderFault = false): void {
    this.entryFaults.set(eventId, { times, senderFault });
  }

  /** Answer the next `count` calls with 503 ServiceUnavailable after `delayMs`, without forwarding them. */
  failCalls(count: number, delayMs = 0): void {
    this.callFaults = count;
    this.callFaultDelayMs = delayMs;
  }

  /** Calls of one action, in order. */
  callsOf(action: string): Call[] {
    return this.calls.filter((call) => call.action === action);
  }

  /** Forget calls and faults between tests. */
  reset(): void {
    this.calls.length = 0;
    this.entryFaults.clear();
    this.callFaults = 0;
    this.callFaultDelayMs = 0;
  }

  async close(): Promise<void> {
    this.stopping.abort();
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = await readAll(req);
    const target = String(req.headers["x-amz-target"] ?? "");
    if (!target.startsWith("AmazonSQS.")) throw new Error(`not an AWS JSON 1.0 SQS call: ${target}`);
    const call: Call = { action: target.slice("AmazonSQS.".length), eventIds: [], failedIds: [], bodyBytes: 0, status: 0, at: performance.now() };
    this.calls.push(call);
    if (this.callFaults > 0) {
      this.callFaults -= 1;
      if (this.callFaultDelayMs > 0) await sleep(this.callFaultDelayMs, undefined, { signal: this.stopping.signal }); // a queue that hangs, then fails
      call.status = 503;
      res.writeHead(503, { "content-type": "application/x-amz-json-1.0" });
      res.end(JSON.stringify({ __type: "com.amazonaws.sqs#ServiceUnavailable", message: "injected by the test proxy" }));
      return;
    }
    const doc = JSON.parse(body.toString()) as Record<string, unknown>;
    const injected: object[] = [];
    if (call.action === "SendMessage") this.see(call, doc.MessageBody);
    if (call.action === "SendMessageBatch") {
      const kept = [];
      for (const entry of doc.Entries as { Id: string; MessageBody: string }[]) {
        const eventId = this.see(call, entry.MessageBody);
        const fault = this.entryFaults.get(eventId);
        if (fault === undefined || fault.times <= 0) {
          kept.push(entry);
          continue;
        }
        fault.times -= 1;
        call.failedIds.push(eventId);
        const { senderFault } = fault;
        injected.push({ Id: entry.Id, SenderFault: senderFault, Code: senderFault ? "InvalidParameterValue" : "InternalError", Message: "injected by the test proxy" });
      }
      doc.Entries = kept;
      if (kept.length === 0) {
        call.status = 200;
        res.writeHead(200, { "content-type": "application/x-amz-json-1.0" });
        res.end(JSON.stringify({ Successful: [], Failed: injected }));
        return;
      }
    }
    const answer = await this.forward(req, Buffer.from(JSON.stringify(doc)));
    let out = answer.body;
    if (injected.length > 0 && answer.status === 200) {
      const reply = JSON.parse(out.toString()) as { Failed?: object[] };
      reply.Failed = [...(reply.Failed ?? []), ...injected];
      out = Buffer.from(JSON.stringify(reply));
    }
    call.status = answer.status;
    res.writeHead(answer.status, { "content-type": answer.contentType });
    res.end(out);
  }

  private see(call: Call, messageBody: unknown): string {
    const text = String(messageBody);
    call.bodyBytes += Buffer.byteLength(text);
    const eventId = String((JSON.parse(text) as { id: unknown }).id);
    call.eventIds.push(eventId);
    return eventId;
  }

  private forward(req: http.IncomingMessage, body: Buffer): Promise<{ status: number; contentType: string; body: Buffer }> {
    const headers = { ...req.headers, host: this.upstream.host, "content-length": String(body.length) };
    return new Promise((resolve, reject) => {
      const out = http.request(
        { host: this.upstream.hostname, port: this.upstream.port, method: req.method, path: req.url, headers },
        (answer) => {
          readAll(answer).then(
            (data) => resolve({ status: answer.statusCode ?? 0, contentType: String(answer.headers["content-type"] ?? ""), body: data }),
            reject,
          );
        },
      );
      out.on("error", reject);
      out.end(body);
    });
  }
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Buffer));
  return Buffer.concat(chunks);
}

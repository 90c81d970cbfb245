/** The FIFO queue's buffer of message groups, alone: which events a batch takes, and when. */

import assert from "node:assert/strict";
import { test } from "node:test";

import { Groups } from "../src/fifo.js";

interface Item {
  readonly n: number;
  readonly group: string;
  readonly bytes: number;
}

function buffer(groups: string, bytes = 100): Groups<Item> {
  const buf = new Groups<Item>((item) => item.group);
  [...groups].forEach((group, n) => buf.push({ n, group, bytes }));
  return buf;
}

const ns = (items: readonly Item[]): number[] => items.map((item) => item.n);

test("a batch skips the groups being sent and takes later events of other groups, each group in order", () => {
  const buf = buffer("aaaaaaaaaabacab");
  const first = buf.take(10, 256 * 1024);
  assert.deepEqual(ns(first), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const second = buf.take(10, 256 * 1024);
  assert.deepEqual(ns(second), [10, 12, 14]); // b, c and b's next: a's events wait for the first batch
  assert.deepEqual([buf.take(10, 256 * 1024), buf.peek(), buf.ready, buf.length], [[], undefined, 0, 2]);
  buf.release(first);
  assert.deepEqual([buf.peek()?.n, buf.ready], [11, 2]);
  assert.deepEqual(ns(buf.take(10, 256 * 1024)), [11, 13]);
  buf.release(second);
  assert.deepEqual([buf.length, buf.peek()], [0, undefined]);
});

test("a batch keeps to its limits and stops at the first event that does not fit; one over goes alone", () => {
  const buf = new Groups<Item>((item) => item.group);
  const sizes: [string, number][] = [["a", 10], ["b", 100_000], ["c", 100_000], ["d", 100_000], ["e", 10], ["f", 300_000], ["g", 10]];
  sizes.forEach(([group, bytes], n) => buf.push({ n, group, bytes }));
  assert.deepEqual(ns(buf.take(10, 256 * 1024)), [0, 1, 2]);
  assert.deepEqual(ns(buf.take(10, 256 * 1024)), [3, 4]);
  assert.deepEqual(ns(buf.take(10, 256 * 1024)), [5]);
  assert.deepEqual(ns(buf.take(10, 256 * 1024)), [6]);
  assert.deepEqual(ns(buffer("abcabcabcabc").take(10, 256 * 1024)), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

test("peek is the oldest event whose group is not being sent, and ready counts only those", () => {
  const buf = buffer("aab", 1_000);
  const first = buf.take(1, 256 * 1024);
  assert.deepEqual([ns(first), buf.peek()?.n, buf.ready, buf.readyBytes, buf.length], [[0], 2, 1, 1_000, 2]);
  buf.push({ n: 3, group: "a", bytes: 1_000 });
  assert.deepEqual([buf.ready, buf.length], [1, 3]); // held with its group
  buf.release(first);
  assert.deepEqual([buf.peek()?.n, buf.ready, buf.readyBytes], [1, 3, 3_000]);
});

test("drain returns every buffered event in publish order; a release after it is harmless", () => {
  const buf = buffer("aabac", 100_000);
  const first = buf.take(10, 256 * 1024);
  assert.deepEqual(ns(first), [0, 1]);
  assert.deepEqual(ns(buf.drain()), [2, 3, 4]);
  buf.release(first);
  buf.push({ n: 5, group: "a", bytes: 10 });
  assert.deepEqual([ns(buf.take(10, 256 * 1024)), buf.length], [[5], 0]);
});

test("against a scan of the events in order, through random pushes, takes and releases", () => {
  let seed = 7;
  const random = (): number => {
    seed = (seed + 0x6d2b79f5) | 0; // mulberry32: the same runs every time
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  for (let round = 0; round < 20; round += 1) {
    const buf = new Groups<Item>((item) => item.group);
    let model: Item[] = [];
    const flying: Item[][] = [];
    let n = 0;
    for (let step = 0; step < 400; step += 1) {
      const op = random();
      if (op < 0.5) {
        const group = ["hot", "hot", ..."abcdefghijklmnop"][Math.floor(random() * 18)] as string;
        const bytes = [100, 100, 100, 60_000, 200_000, 300_000][Math.floor(random() * 6)] as number;
        const item = { n: n++, group, bytes };
        buf.push(item);
        model.push(item);
      } else if (op < 0.8 || flying.length === 0) {
        const busy = new Set(flying.flat().map((item) => item.group));
        const free = model.filter((item) => !busy.has(item.group));
        const want: Item[] = [];
        for (const item of free) {
          const bytes = want.reduce((sum, x) => sum + x.bytes, 0);
          if (want.length === 10 || (want.length > 0 && bytes + item.bytes > 256 * 1024)) break;
          want.push(item);
        }
        const freeBytes = free.reduce((sum, item) => sum + item.bytes, 0);
        assert.deepEqual([buf.peek()?.n, buf.ready, buf.readyBytes], [free[0]?.n, free.length, freeBytes]);
        const batch = buf.take(10, 256 * 1024);
        assert.deepEqual(ns(batch), ns(want));
        model = model.filter((item) => !batch.includes(item));
        if (batch.length > 0) flying.push(batch);
      } else {
        buf.release(flying.splice(Math.floor(random() * flying.length), 1)[0] as Item[]);
      }
      assert.equal(buf.length, model.length);
    }
  }
});

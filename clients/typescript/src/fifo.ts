/** A first-in first-out queue with O(1) push and shift (an array's shift() moves every element). */
export class Fifo<T> {
  private items: T[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  /** The item `index` places from the front; the queue must hold it. */
  at(index: number): T {
    return this.items[this.head + index] as T;
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.head += 1;
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /** Remove and return every item. */
  drain(): T[] {
    const all = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return all;
  }
}

interface Slot<T> {
  readonly seq: number; // its place in the order items were pushed
  readonly item: T;
}

interface Group<T> {
  readonly slots: Fifo<Slot<T>>;
  bytes: number;
  held: boolean; // a batch taken from it has not been released
}

/**
 * A FIFO queue's buffer: one queue per message group, so that a batch can pass over the groups of the
 * batches being sent and take later items of other groups, while a group's items leave in order and two
 * batches being sent never share a group. The groups that may go wait in a heap by their oldest item:
 * taking a batch costs a few heap operations, however many items wait behind a group being sent.
 */
export class Groups<T extends { readonly bytes: number }> {
  private readonly groups = new Map<string, Group<T>>();
  private readonly heads = new SeqHeap(); // each group that may go, by the seq of its oldest item
  private seq = 0;
  private count = 0;
  private readyCount = 0;
  private readyTotal = 0;

  constructor(private readonly groupOf: (item: T) => string) {}

  /** Items buffered. */
  get length(): number {
    return this.count;
  }

  /** Items whose group is not held: they may go in the next batch. */
  get ready(): number {
    return this.readyCount;
  }

  /** The bytes of the items that may go. */
  get readyBytes(): number {
    return this.readyTotal;
  }

  push(item: T): void {
    const key = this.groupOf(item);
    let group = this.groups.get(key);
    if (group === undefined) {
      group = { slots: new Fifo<Slot<T>>(), bytes: 0, held: false };
      this.groups.set(key, group);
    }
    const seq = this.seq++;
    group.slots.push({ seq, item });
    group.bytes += item.bytes;
    this.count += 1;
    if (group.held) return;
    if (group.slots.length === 1) this.heads.push(seq, key);
    this.readyCount += 1;
    this.readyTotal += item.bytes;
  }

  /** The oldest item that may go, if any. */
  peek(): T | undefined {
    for (let top = this.heads.peek(); top !== undefined; top = this.heads.peek()) {
      const group = this.groups.get(top.key);
      if (group !== undefined && !group.held && group.slots.length > 0) return group.slots.at(0).item;
      this.heads.pop(); // not expected: a group in the heap may go and has items
    }
    return undefined;
  }

  /**
   * The next batch: the items that may go, in order, up to `maxItems` and `maxBytes` (stopping at the
   * first that does not fit; an item over `maxBytes` goes alone). Their groups are held until `release`.
   */
  take(maxItems: number, maxBytes: number): T[] {
    const batch: T[] = [];
    let bytes = 0;
    const taken = new Map<string, Group<T>>();
    const nexts = new SeqHeap(); // the next items of the groups taken: they may join, in their turn
    while (batch.length < maxItems) {
      const [mine, ready] = [nexts.peek(), this.heads.peek()];
      const heap = mine !== undefined && (ready === undefined || mine.seq < ready.seq) ? nexts : this.heads;
      const top = heap.peek();
      if (top === undefined) break;
      const group = this.groups.get(top.key);
      if (group === undefined || group.held || group.slots.length === 0) {
        heap.pop(); // not expected, as in peek()
        continue;
      }
      const { item } = group.slots.at(0);
      if (batch.length > 0 && bytes + item.bytes > maxBytes) break;
      group.slots.shift();
      group.bytes -= item.bytes;
      batch.push(item);
      bytes += item.bytes;
      taken.set(top.key, group);
      heap.pop();
      if (group.slots.length > 0) nexts.push(group.slots.at(0).seq, top.key);
    }
    for (const group of taken.values()) {
      group.held = true; // its later items wait for this batch
      this.readyCount -= group.slots.length;
      this.readyTotal -= group.bytes;
    }
    this.readyCount -= batch.length;
    this.readyTotal -= bytes;
    this.count -= batch.length;
    return batch;
  }

  /** A batch `take` returned has ended: its groups may go again. */
  release(batch: readonly T[]): void {
    for (const key of new Set(batch.map((item) => this.groupOf(item)))) {
      const group = this.groups.get(key);
      if (group === undefined || !group.held) continue;
      group.held = false;
      if (group.slots.length === 0) {
        this.groups.delete(key);
        continue;
      }
      this.heads.push(group.slots.at(0).seq, key);
      this.readyCount += group.slots.length;
      this.readyTotal += group.bytes;
    }
  }

  /** Remove and return every item, in the order they were pushed; held groups stay held until released. */
  drain(): T[] {
    const slots: Slot<T>[] = [];
    for (const [key, group] of this.groups) {
      slots.push(...group.slots.drain());
      group.bytes = 0;
      if (!group.held) this.groups.delete(key);
    }
    this.heads.clear();
    this.count = this.readyCount = this.readyTotal = 0;
    return slots.sort((a, b) => a.seq - b.seq).map((slot) => slot.item);
  }
}

/** A binary min-heap of (seq, key) pairs by seq. */
class SeqHeap {
  private readonly seqs: number[] = [];
  private readonly keys: string[] = [];

  peek(): { seq: number; key: string } | undefined {
    const [seq, key] = [this.seqs[0], this.keys[0]];
    return seq === undefined || key === undefined ? undefined : { seq, key };
  }

  push(seq: number, key: string): void {
    let i = this.seqs.length;
    this.seqs.push(seq);
    this.keys.push(key);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((this.seqs[parent] as number) <= seq) break;
      this.move(parent, i);
      i = parent;
    }
    this.seqs[i] = seq;
    this.keys[i] = key;
  }

  pop(): void {
    const seq = this.seqs.pop();
    const key = this.keys.pop();
    const n = this.seqs.length;
    if (n === 0 || seq === undefined || key === undefined) return;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && (this.seqs[child + 1] as number) < (this.seqs[child] as number)) child += 1;
      if ((this.seqs[child] as number) >= seq) break;
      this.move(child, i);
      i = child;
    }
    this.seqs[i] = seq;
    this.keys[i] = key;
  }

  clear(): void {
    this.seqs.length = 0;
    this.keys.length = 0;
  }

  private move(from: number, to: number): void {
    this.seqs[to] = this.seqs[from] as number;
    this.keys[to] = this.keys[from] as string;
  }
}

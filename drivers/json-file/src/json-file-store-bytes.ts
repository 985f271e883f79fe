import { randomUUID } from "node:crypto";
import type { TaskTable, WriteSet } from "@taskstore/core";

const COMMA = Buffer.from(",");
const OPEN = Buffer.from("[");
const CLOSE = Buffer.from("]");

/**
 * Produces the bytes of `JSON.stringify(table.toData(now))`, keeping each task's UTF-8 JSON
 * between writes and encoding again only the tasks a write set touched. At 10,000 tasks a full
 * stringify plus UTF-8 encoding costs about 40 ms per write on a small machine; this is a
 * memory copy. Valid for one table only, changed only through `TaskTable.apply()` with each
 * write set passed to `forget()` first.
 */
export class StoreBytes {
  private readonly parts = new Map<string, Buffer>();

  /** Drops the cached JSON of every task the write set changes or removes. */
  forget(writes: WriteSet): void {
    for (const body of writes.puts) this.parts.delete(body.id);
    for (const log of writes.logs) this.parts.delete(log.id);
    for (const id of writes.deletes) this.parts.delete(id);
  }

  encode(table: TaskTable, now: number = Date.now()): Buffer {
    // The store around the tasks, with a marker where they go: key order and unknown fields stay
    // exactly as `toData()` makes them. A random marker cannot occur anywhere else in the text.
    const marker = JSON.stringify(`\u0000tasks-${randomUUID()}`);
    const shell = JSON.stringify({ ...table.toData(now), tasks: JSON.parse(marker) });
    const at = shell.indexOf(marker);
    const pieces: Buffer[] = [Buffer.from(shell.slice(0, at)), OPEN];
    let first = true;
    for (const task of table.tasks.values()) {
      let json = this.parts.get(task.id);
      if (json === undefined) {
        json = Buffer.from(JSON.stringify(task));
        this.parts.set(task.id, json);
      }
      if (!first) pieces.push(COMMA);
      pieces.push(json);
      first = false;
    }
    pieces.push(CLOSE, Buffer.from(shell.slice(at + marker.length)));
    return Buffer.concat(pieces);
  }
}

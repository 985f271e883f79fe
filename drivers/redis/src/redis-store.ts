import { joinStore, type LogEntry, type StorageData, type StoredTask, splitStore, taskBody } from "@taskstore/core";
import type { ChainableCommander, Cluster, Redis } from "ioredis";
import { parseObject, replyOf } from "./redis-errors.js";
import type { StoreKeys } from "./redis-keys.js";
import { CLEAR } from "./redis-scripts.js";

/*
 * A whole store in Redis and back (saveData, loadData). Layout (see the README): a JSON string
 * per task without its log (`t:<id>`), its log as a list of JSON entries (`l:<id>`), the ids in a
 * sorted set scored by creation order, and a meta hash holding `version`, `lastUpdated` and the
 * store's unknown fields as JSON (`extra`, `metaExtra`).
 */

/** One MULTI that replaces the main store with `data`, counts the commit and announces it. */
export function saveMulti(client: Redis | Cluster, keys: StoreKeys, data: StorageData, instance: string): ChainableCommander {
  const { main } = keys;
  const { envelope, tasks } = splitStore(data);
  const multi = client.multi();
  multi.call("EVAL", CLEAR.source, 3, main.meta, main.ids, main.seq, main.base);
  multi.hset(main.meta, {
    version: envelope.version,
    lastUpdated: String(envelope.lastUpdated),
    extra: JSON.stringify(envelope.extra),
    metaExtra: JSON.stringify(envelope.metadataExtra),
  });
  tasks.forEach((task, i) => {
    multi.set(main.task(task.id), JSON.stringify(taskBody(task))).zadd(main.ids, i + 1, task.id);
    // RPUSH in slices: one command with a huge log would be one huge request.
    for (let at = 0; at < task.logs.length; at += 1_000) {
      multi.rpush(main.log(task.id), ...task.logs.slice(at, at + 1_000).map((entry) => JSON.stringify(entry)));
    }
  });
  multi.set(main.seq, tasks.length).incr(keys.rev).publish(keys.channel, instance);
  return multi;
}

/**
 * The store from one MULTI's replies: the meta hash, then (task, log) per id in `ids`. An id whose
 * task is gone (deleted between the two reads) is skipped. `seen` gets every task's raw JSON and
 * log length, for the head cache.
 */
export function decodeStore(
  meta: Record<string, string>,
  ids: string[],
  replies: [Error | null, unknown][],
  seen: (id: string, raw: string, logCount: number, index: number) => void,
): StorageData {
  const extra = meta.extra ? parseObject(meta.extra, "the store's extra fields") : {};
  const metadataExtra = meta.metaExtra ? parseObject(meta.metaExtra, "the store's metadata") : {};
  const tasks: StoredTask[] = [];
  ids.forEach((id, i) => {
    const raw = replyOf<string | null>(replies[2 * i]);
    if (raw === null) return;
    const task = parseObject(raw, `task ${id}`) as StoredTask;
    const logs = replyOf<string[]>(replies[2 * i + 1]);
    task.logs = logs.map((entry, n) => parseObject(entry, `log entry ${n} of task ${id}`) as LogEntry);
    tasks.push(task);
    seen(id, raw, logs.length, i);
  });
  return joinStore({ version: meta.version || undefined, lastUpdated: Number(meta.lastUpdated ?? 0), extra, metadataExtra }, tasks);
}

import { createHash } from "node:crypto";
import type { Cluster, Redis } from "ioredis";

/**
 * A Lua script run by EVALSHA, falling back to EVAL when the server does not know it yet (a new
 * or restarted server). Keys are declared; the few built from a namespace's base (task and log
 * keys of backup/restore) share the store's hash tag, so they are in the same slot.
 */
export class Script {
  private readonly sha: string;
  constructor(readonly source: string) {
    this.sha = createHash("sha1").update(source).digest("hex");
  }

  async run(client: Redis | Cluster, keys: string[], args: (string | number)[]): Promise<unknown> {
    try {
      return await client.call("EVALSHA", [this.sha, keys.length, ...keys, ...args]);
    } catch (error) {
      if (!String((error as Error).message).startsWith("NOSCRIPT")) throw error;
      return client.call("EVAL", [this.source, keys.length, ...keys, ...args]);
    }
  }
}

/**
 * Applies one write set if nothing it read has changed (optimistic concurrency).
 * KEYS: lock, rev, meta, ids, seq, the transaction's marker, then per check (task, log), per put
 * (task), per log write (task, log), per delete (task, log).
 * ARGV: lockValue, instance, channel, now, nChecks, expectedVersion, newVersion, nPuts, nLogs,
 * nDeletes, marker ttl ms, this instance's own channel ("" on a cluster), then per check (sha1 of
 * the task JSON or "", log length), per put (id, json), per log write (replace, keep, count,
 * entries...), per delete (id).
 * The commit is announced on the channel only when someone other than this instance listens: its
 * own subscriber also subscribes to its own channel, so the two counts tell them apart. On a
 * cluster (where NUMSUB counts one node's subscribers only), or when an ACL refuses PUBSUB, it is
 * always announced.
 * Applying sets the marker to "1" (with the ttl), so a commit whose reply was lost can be told
 * apart from one that never ran (see SETTLE). A marker already set means this transaction id was
 * settled before: nothing is written.
 * Returns 1 applied, 0 conflict, -1 the store's lock is held by another instance, 2 the marker
 * was already set.
 */
export const COMMIT = new Script(`
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[6]) == 1 then return 2 end
local k, a = 7, 13
for _ = 1, tonumber(ARGV[5]) do
  local value = redis.call('GET', KEYS[k])
  local sha = ARGV[a]
  if sha == '' then
    if value then return 0 end
  elseif not value or redis.sha1hex(value) ~= sha then
    return 0
  end
  if redis.call('LLEN', KEYS[k + 1]) ~= tonumber(ARGV[a + 1]) then return 0 end
  k, a = k + 2, a + 2
end
local version = redis.call('HGET', KEYS[3], 'version') or ''
if version ~= ARGV[6] then return 0 end
for _ = 1, tonumber(ARGV[8]) do
  local id = ARGV[a]
  redis.call('SET', KEYS[k], ARGV[a + 1])
  if not redis.call('ZSCORE', KEYS[4], id) then
    redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[5]), id)
  end
  k, a = k + 1, a + 2
end
for _ = 1, tonumber(ARGV[9]) do
  local count = tonumber(ARGV[a + 2])
  if redis.call('EXISTS', KEYS[k]) == 1 then
    if ARGV[a] == '1' then redis.call('DEL', KEYS[k + 1]) end
    local first = a + 3
    while first < a + 3 + count do
      local last = math.min(first + 999, a + 2 + count)
      redis.call('RPUSH', KEYS[k + 1], unpack(ARGV, first, last))
      first = last + 1
    end
    local keep = tonumber(ARGV[a + 1])
    if keep > 0 then redis.call('LTRIM', KEYS[k + 1], -keep, -1) else redis.call('DEL', KEYS[k + 1]) end
  end
  k, a = k + 2, a + 3 + count
end
for _ = 1, tonumber(ARGV[10]) do
  redis.call('DEL', KEYS[k], KEYS[k + 1])
  redis.call('ZREM', KEYS[4], ARGV[a])
  k, a = k + 2, a + 1
end
redis.call('HSET', KEYS[3], 'version', ARGV[7], 'lastUpdated', ARGV[4])
redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[6], '1', 'PX', ARGV[11])
-- A count the server will not give (an ACL without PUBSUB) means: announce, as if someone listened.
local function listeners(channel)
  local reply = redis.pcall('PUBSUB', 'NUMSUB', channel)
  if type(reply) ~= 'table' or reply.err then return nil end
  return reply[2]
end
local others, own = nil, nil
if ARGV[12] ~= '' then others, own = listeners(ARGV[3]), listeners(ARGV[12]) end
if not others or not own or others > own then
  redis.call('PUBLISH', ARGV[3], ARGV[2])
end
return 1
`);

/**
 * Settles a commit whose reply was lost: returns its marker ("1": the commit was applied), or, when
 * there is none, sets it to "void" (with the ttl) so that the commit, should it still arrive late,
 * writes nothing, and returns "void".
 * KEYS: the transaction's marker. ARGV: ttl ms.
 */
export const SETTLE = new Script(`
local state = redis.call('GET', KEYS[1])
if state then return state end
redis.call('SET', KEYS[1], 'void', 'PX', ARGV[1])
return 'void'
`);

/**
 * Deletes a namespace: its tasks and logs (found through its id index), index, meta and counter.
 * Run inside MULTI by saveData, before the new store is written.
 * KEYS: meta, ids, seq. ARGV: the namespace's base.
 */
export const CLEAR = new Script(`
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  redis.call('DEL', ARGV[1] .. 't:' .. id, ARGV[1] .. 'l:' .. id)
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 1
`);

/**
 * Copies one namespace over another (deleting the target's old keys first).
 * KEYS: from meta, ids, seq, to meta, ids, seq, a key set to ARGV[3]. ARGV: from base, to base,
 * stamp value, and the default version for a store never written.
 */
export const COPY_SPACE = new Script(`
for _, id in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
  redis.call('DEL', ARGV[2] .. 't:' .. id, ARGV[2] .. 'l:' .. id)
end
redis.call('DEL', KEYS[4], KEYS[5], KEYS[6])
for i = 1, 3 do redis.call('COPY', KEYS[i], KEYS[i + 3]) end
if redis.call('EXISTS', KEYS[4]) == 0 then redis.call('HSET', KEYS[4], 'version', ARGV[4]) end
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  redis.call('COPY', ARGV[1] .. 't:' .. id, ARGV[2] .. 't:' .. id)
  redis.call('COPY', ARGV[1] .. 'l:' .. id, ARGV[2] .. 'l:' .. id)
end
redis.call('SET', KEYS[7], ARGV[3])
return 1
`);

/**
 * Moves the live store aside and copies the backup in its place, in one step.
 * KEYS: main meta, ids, seq; backup meta, ids, seq; aside meta, ids, seq; rev.
 * ARGV: main base, backup base, aside base, channel, instance.
 * Returns 0 when there is no backup, 1 restored into an empty store, 2 restored and moved aside.
 */
export const RESTORE = new Script(`
if redis.call('EXISTS', KEYS[4]) == 0 then return 0 end
local moved = 1
local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
if redis.call('EXISTS', KEYS[1]) == 1 or #ids > 0 then moved = 2 end
for _, id in ipairs(ids) do
  for _, kind in ipairs({'t:', 'l:'}) do
    if redis.call('EXISTS', ARGV[1] .. kind .. id) == 1 then
      redis.call('RENAME', ARGV[1] .. kind .. id, ARGV[3] .. kind .. id)
    end
  end
end
for i = 1, 3 do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('RENAME', KEYS[i], KEYS[i + 6]) end
end
for i = 1, 3 do redis.call('COPY', KEYS[i + 3], KEYS[i]) end
for _, id in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
  redis.call('COPY', ARGV[2] .. 't:' .. id, ARGV[1] .. 't:' .. id)
  redis.call('COPY', ARGV[2] .. 'l:' .. id, ARGV[1] .. 'l:' .. id)
end
redis.call('INCR', KEYS[10])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return moved
`);

/** KEYS: lock. ARGV: value, ttl ms. Extends the lock if this holder still has it. */
export const RENEW_LOCK = new Script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`);

/** KEYS: lock. ARGV: value. Deletes the lock only if this holder has it. */
export const RELEASE_LOCK = new Script(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`);

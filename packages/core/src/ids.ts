import { randomFillSync } from "node:crypto";

const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"; // Crockford base32: no I, L, O, U

let lastTime = -1;
let lastRandom: number[] = [];

/** Random bytes drawn 4 KiB at a time: one randomFillSync() per 256 draws instead of a randomBytes() each. */
const pool = Buffer.alloc(4096);
let poolAt = pool.length;

function random16(): Buffer {
  if (poolAt + 16 > pool.length) {
    randomFillSync(pool);
    poolAt = 0;
  }
  poolAt += 16;
  return pool.subarray(poolAt - 16, poolAt);
}

/**
 * A new task id: 26 characters, ULID style. The first 10 encode the creation time in
 * milliseconds, so ids sort by creation time; within one millisecond the random part counts up,
 * so ids made by one process still sort in creation order.
 */
export function newTaskId(now: number = Date.now()): string {
  if (now <= lastTime) {
    incrementRandom(lastRandom);
    now = lastTime;
  } else {
    lastTime = now;
    lastRandom = Array.from(random16(), (byte) => byte & 31);
    lastRandom[0] = (lastRandom[0] as number) & 15; // headroom so increments never overflow
  }
  let time = "";
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[t % 32] + time;
    t = Math.floor(t / 32);
  }
  return time + lastRandom.map((digit) => ALPHABET[digit]).join("");
}

function incrementRandom(digits: number[]): void {
  for (let i = digits.length - 1; i >= 0; i--) {
    const next = (digits[i] as number) + 1;
    if (next < 32) {
      digits[i] = next;
      return;
    }
    digits[i] = 0;
  }
}

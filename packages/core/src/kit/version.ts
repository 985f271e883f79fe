/**
 * Comparing schema versions, for a driver that records the store's version itself (a write set's
 * `version` is never a downgrade: keep `newerVersion(stored, writes.version)`).
 */
export { newerVersion, parseVersion } from "../schema.js";

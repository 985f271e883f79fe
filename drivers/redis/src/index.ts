export { RedisStorageDriver, type RedisStorageDriverOptions } from "./redis-driver.js";
export { StoreKeys, validatePrefix } from "./redis-keys.js";

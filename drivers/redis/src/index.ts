export { StoreKeys, validatePrefix } from "./keys.js";
export { RedisStorageDriver, type RedisStorageDriverOptions } from "./redis-driver.js";

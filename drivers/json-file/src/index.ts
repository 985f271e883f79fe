export { READ_LIMIT_BYTES } from "./json-file-atomic.js";
export { defaultStorePath } from "./json-file-default-path.js";
export { JSONFileStorageDriver } from "./json-file-driver.js";
export { DEFAULT_MAX_STORE_BYTES, type JSONFileStorageDriverOptions } from "./json-file-options.js";

export { READ_LIMIT_BYTES } from "./atomic-file.js";
export { defaultStorePath } from "./default-path.js";
export { JSONFileStorageDriver } from "./json-file-driver.js";
export { DEFAULT_MAX_STORE_BYTES, type JSONFileStorageDriverOptions } from "./json-file-options.js";

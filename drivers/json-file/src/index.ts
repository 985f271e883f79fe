export { READ_LIMIT_BYTES } from "./atomic-file.js";
export { defaultStorePath } from "./default-path.js";
export { DEFAULT_MAX_STORE_BYTES, JSONFileStorageDriver, type JSONFileStorageDriverOptions } from "./json-file-driver.js";

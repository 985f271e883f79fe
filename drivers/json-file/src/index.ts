export { defaultStorePath } from "./default-path.js";
export { JSONFileStorageDriver, type JSONFileStorageDriverOptions } from "./json-file-driver.js";

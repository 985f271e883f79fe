export { S3StorageDriver, type S3StorageDriverOptions } from "./s3-driver.js";
export type { EtagQuoting } from "./s3-io.js";
export { UnsafeEndpointError } from "./s3-probe.js";

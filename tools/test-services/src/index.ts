export { exited, type NodeScriptOptions, runNodeScript, startNodeScript } from "./children.js";
export {
  type ContainerInfo,
  type ImageSet,
  imageFor,
  imageSet,
  LOCAL_IMAGES,
  networking,
  OFFICIAL_IMAGES,
} from "./container.js";
export { containersRequired, dockerReachable } from "./docker.js";
export { ServiceUnavailableError } from "./errors.js";
export { type FaultyFolder, startFaultyFolder } from "./faulty-folder.js";
export { LossyProxy, type LossyProxyOptions } from "./lossy-proxy.js";
export * from "./postgres.js";
export { freePort } from "./processes.js";
export { type RedisCluster, type RedisServer, type StartRedisOptions, startRedis, startRedisCluster } from "./redis.js";
export * from "./s3.js";

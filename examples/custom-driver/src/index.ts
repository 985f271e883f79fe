export { FolderStorageDriver } from "./folder-driver.js";

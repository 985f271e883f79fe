export { COMMANDS, type MainIO, main } from "./cli.js";
export { type ErrorReport, EXIT_CODES, reportError } from "./exit-codes.js";
export { type OpenStore, openStore } from "./open-store.js";
export { parseStoreUrl, redactText, redactUrl, type StoreKind, type StoreSpec, SUPPORTED_SCHEMES } from "./store-url.js";

// Store URLs are core's (the library honours TASKSTORE_URL as the CLI does); re-exported for existing users.
export { parseStoreUrl, redactText, redactUrl, type StoreKind, type StoreSpec, SUPPORTED_SCHEMES } from "@taskstore/core";
export { COMMANDS, type MainIO, main } from "./cli.js";
export { type ErrorReport, EXIT_CODES, reportError } from "./exit-codes.js";
export { type OpenStore, openStore } from "./open-store.js";

import { driverErrors } from "@taskstore/core";

/** Core's errors, every message starting "s3: ". */
export const errors = driverErrors("s3");

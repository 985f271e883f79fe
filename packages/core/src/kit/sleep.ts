/** Resolves after `ms` milliseconds: the pause between a driver's retries and polls. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * No server could be had: no URL in the environment, no Docker engine, no local binary. Thrown
 * always (under `CI=true` and outside it): a driver test that cannot reach a real server fails
 * loudly and says what to install, it never skips.
 */
export class ServiceUnavailableError extends Error {
  constructor(service: string, howToGet: string, options?: { cause?: unknown }) {
    super(`test-services: no ${service} server for this test run${process.env.CI === "true" ? " (CI=true)" : ""}. ${howToGet}`, options);
    this.name = "ServiceUnavailableError";
  }
}

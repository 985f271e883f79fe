import { ValidationError } from "../errors.js";

/**
 * An option's old name, kept for one minor version. `toCanonical` turns its value into the new
 * option's terms when the two count differently (an "attempts" count is one more than a
 * "retries" count: `toCanonical: (attempts) => attempts - 1`); without it the value is taken as it is.
 */
export interface DeprecatedAlias<V> {
  name: string;
  toCanonical?: (value: V) => V;
}

/** Aliases already warned about, `"<driver>.<alias>"`: each warns once per process, not per instance. */
const warned = new Set<string>();

/**
 * The value of option `canonical`, or of its deprecated alias when only that was given (converted
 * by `toCanonical`), or undefined when neither was. The alias works as before and warns once per
 * process (`DeprecationWarning`, code `TASKSTORE_DEPRECATED_OPTION`); giving both with different
 * values is a `ValidationError` naming both, since one of them would be ignored silently.
 *
 * `resolveOption(options, "lockExpiryMs", "lockStaleMs", "sqlite")`.
 */
export function resolveOption<O extends object, K extends keyof O & string>(
  options: O | undefined,
  canonical: K,
  deprecatedAlias: (keyof O & string) | DeprecatedAlias<Exclude<O[K], undefined>>,
  driverName: string,
): O[K] | undefined {
  const alias = typeof deprecatedAlias === "string" ? { name: deprecatedAlias } : deprecatedAlias;
  const value = options?.[canonical];
  const old = (options as Record<string, unknown> | undefined)?.[alias.name] as Exclude<O[K], undefined> | undefined;
  if (old === undefined) return value;
  const converted = alias.toCanonical ? alias.toCanonical(old) : old;
  if (value !== undefined && !Object.is(value, converted)) {
    throw new ValidationError(
      [
        {
          path: [alias.name],
          rule: "deprecated_alias",
          message: `is the deprecated name of ${canonical}, which is given too with another value (${String(value)}); give ${canonical} only`,
        },
      ],
      { subject: driverName },
    );
  }
  warnOnce(
    driverName,
    alias.name,
    canonical,
    alias.toCanonical ? ` (${alias.name}: ${String(old)} is ${canonical}: ${String(converted)})` : "",
  );
  return converted;
}

function warnOnce(driverName: string, alias: string, canonical: string, conversion: string): void {
  const key = `${driverName}.${alias}`;
  if (warned.has(key)) return;
  warned.add(key);
  process.emitWarning(
    `${driverName}: the option ${alias} is deprecated and goes in the next minor version: use ${canonical}${conversion}`,
    { type: "DeprecationWarning", code: "TASKSTORE_DEPRECATED_OPTION" },
  );
}

/** What a number option must be: at least `min` (default 0), and a whole number when `integer`. */
export interface NumberRule {
  min?: number;
  integer?: boolean;
}

/**
 * A number option (a duration in ms, a count): `fallback` when undefined; otherwise it must be a
 * finite number meeting `rule`, or it is a `ValidationError` naming the option. So a typo such as
 * `lockTimeoutMs: "30s"` fails in the constructor instead of as a strange timeout later.
 */
export function numberOption(value: unknown, name: string, driverName: string, fallback: number, rule: NumberRule = {}): number {
  if (value === undefined) return fallback;
  const min = rule.min ?? 0;
  if (typeof value !== "number" || !Number.isFinite(value) || value < min || (rule.integer && !Number.isInteger(value))) {
    throw new ValidationError(
      [
        {
          path: [name],
          rule: rule.integer ? "integer" : "number",
          message: `must be a ${rule.integer ? "whole number" : "finite number"} of at least ${min}, not ${describe(value)}`,
        },
      ],
      { subject: driverName },
    );
  }
  return value;
}

function describe(value: unknown): string {
  return typeof value === "string" ? JSON.stringify(value) : String(value);
}

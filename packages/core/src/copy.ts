/*
 * Copies of plain data objects (tasks, task heads) for the hot path of every write. V8 (Node 20)
 * makes two common forms slow, measured here at 2-4 us per copy, several copies per operation:
 * object rest (`const { logs, ...body } = task`) and a spread followed by more properties
 * (`{ ...head, updatedAt }`), whose result gets a map that cannot cache the added property's
 * transition. Copies built from `{}` (Object.assign, or one property at a time) stay on V8's
 * fast paths (0.1-0.3 us). For plain objects only (JSON data, which is all a task is). An own
 * `__proto__` key (JSON.parse makes one) stays an own data property and never touches the
 * prototype.
 */

/** A shallow copy of `source` without `key`. */
export function withoutKey<T extends object, K extends keyof T & string>(source: T, key: K): Omit<T, K> {
  const copy: Record<string, unknown> = {};
  for (const name in source) {
    if ((name as string) === key) continue;
    define(copy, name, (source as Record<string, unknown>)[name]);
  }
  return copy as Omit<T, K>;
}

/** A shallow copy of `source` with `fields` set on it (added or replaced). */
export function patched<T extends object>(source: T, fields: Partial<T>): T {
  // Object.assign onto a fresh object is the fastest copy, but it would pass an own `__proto__`
  // to the prototype setter: such objects take the property-by-property way.
  const copy = Object.hasOwn(source, "__proto__") ? copyEach({}, source) : (Object.assign({}, source) as Record<string, unknown>);
  return (Object.hasOwn(fields, "__proto__") ? copyEach(copy, fields) : Object.assign(copy, fields)) as T;
}

function copyEach(target: Record<string, unknown>, source: object): Record<string, unknown> {
  for (const name in source) define(target, name, (source as Record<string, unknown>)[name]);
  return target;
}

function define(target: Record<string, unknown>, name: string, value: unknown): void {
  if (name === "__proto__") Object.defineProperty(target, name, { value, enumerable: true, writable: true, configurable: true });
  else target[name] = value;
}

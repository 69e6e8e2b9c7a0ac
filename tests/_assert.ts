// Assertions for the test suite (JSR's @std/assert is not reachable): thin wrappers over
// node:assert with the familiar names.

import nodeAssert from "node:assert/strict";

export function assert(condition: unknown, message = "assertion failed"): asserts condition {
  nodeAssert.ok(condition, message);
}

/** Deep, strict equality (Maps, Sets, arrays, objects, typed arrays). */
export function assertEquals(actual: unknown, expected: unknown, message?: string): void {
  nodeAssert.deepStrictEqual(actual, expected, message);
}

export function assertNotEquals(actual: unknown, expected: unknown, message?: string): void {
  nodeAssert.notDeepStrictEqual(actual, expected, message);
}

export function assertMatch(actual: string, pattern: RegExp, message?: string): void {
  nodeAssert.match(actual, pattern, message);
}

export async function assertRejects(
  fn: () => Promise<unknown>,
  check?: (error: unknown) => boolean,
): Promise<void> {
  let threw = false;
  try {
    await fn();
  } catch (error) {
    threw = true;
    if (check && !check(error)) throw new Error(`unexpected rejection: ${error}`);
  }
  if (!threw) throw new Error("expected a rejection");
}

export function assertThrows(fn: () => unknown, check?: (error: unknown) => boolean): void {
  let threw = false;
  try {
    fn();
  } catch (error) {
    threw = true;
    if (check && !check(error)) throw new Error(`unexpected error: ${error}`);
  }
  if (!threw) throw new Error("expected an exception");
}

/**
 * The error type and small shared checks of the membership log and identity strings (split
 * out of membership.ts so that identity.ts can use them without an import cycle).
 */
import { SecsyncError } from './errors';
import { MembershipErrorCode } from './membershipCodes';

/** base64url (no padding) of 24, 32 and 64 bytes, canonical last character */
export const B64_RE: Record<number, RegExp> = {
  32: /^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/,
  24: /^[A-Za-z0-9_-]{32}$/,
  64: /^[A-Za-z0-9_-]{85}[AQgw]$/
};

export class MembershipError extends SecsyncError {
  readonly field: string | null;
  /** position of the offending entry when a whole log (or a delta) was verified */
  index: number | null = null;
  readonly detail: string | undefined;
  constructor(code: MembershipErrorCode, field: string | null, detail?: string) {
    const text = detail ?? undefined;
    super(code, field === null ? text : text ? `${field}: ${text}` : field);
    this.name = 'MembershipError';
    this.field = field;
    this.detail = detail;
  }
}

export function err(code: number, field: string | null, detail?: string): MembershipError {
  return new MembershipError(`SECSYNC_ERROR_${code}` as MembershipErrorCode, field, detail);
}

export function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) {
    return false;
  }
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

export function has(obj: Record<string, unknown>, key: string): boolean {
  return Object.prototype.hasOwnProperty.call(obj, key);
}

/** A JSON integer 0 … 2^53−1 (701 naming the field otherwise). */
export function intValue(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw err(701, field, 'expected an integer');
  }
  if (value < 0 || value > Number.MAX_SAFE_INTEGER) {
    throw err(701, field, 'out of range (0 … 2^53-1)');
  }
  return value === 0 ? 0 : value; // -0 is 0
}

/** Canonical base64url of `length` bytes (701 naming the field otherwise). */
export function b64Field(value: unknown, field: string, length: 24 | 32 | 64): string {
  if (typeof value !== 'string' || !B64_RE[length].test(value)) {
    throw err(701, field, `expected base64url of ${length} bytes`);
  }
  return value;
}

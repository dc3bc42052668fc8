// I-JSON (RFC 7493) at the edge: the one pass that every JSON and NDJSON body goes through, so that what is accepted
// is stored and returned equal in meaning. Refused: strings (values or keys) with lone surrogates, numbers that a
// double cannot hold as sent (not finite, integers beyond ±2^53, decimals that do not round-trip), and an object
// key that appears twice at any depth. The parser itself (@streamparser/json) stays; this sits between its tokenizer
// and its token parser and sees every token once.
import { Tokenizer, TokenParser, TokenType, type TokenizerOptions, type TokenParserOptions } from '@streamparser/json';
import type { ParsedTokenInfo } from '@streamparser/json';

/** One I-JSON violation: where (dotted path from the document's root, `[]` for the root) and why. */
export interface IJsonViolation {
  path: (string | number)[];
  message: string;
}

/** The largest integer a double holds exactly, with all below it (RFC 7493 section 2.2). */
const maxExactInteger = 2n ** 53n;

/**
 * Why a number as written in the JSON text is not acceptable, or undefined. `text` is the literal (JSON number
 * grammar, already checked by the tokenizer). A number is kept when the double it parses to reads back as the same
 * decimal value: `1.0`, `1e2` and `0.5` are kept, `1e400`, `1e-400` and `0.30000000000000001` are not. Integer
 * literals must lie within ±2^53.
 */
export function numberProblem(text: string): string | undefined {
  const value = Number(text);
  if (!Number.isFinite(value)) return `${shorten(text)} is out of range for a double`;
  if (/^-?\d+$/.test(text)) {
    const integer = BigInt(text);
    return integer <= maxExactInteger && integer >= -maxExactInteger
      ? undefined
      : `${shorten(text)} is an integer beyond ±2^53, which cannot be kept exactly`;
  }
  return sameDecimal(text, String(value)) ? undefined : `${shorten(text)} cannot be kept exactly as a double (it would read back as ${value})`;
}

function shorten(text: string): string {
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

/** The decimal value of a JSON number literal (or a JS number's string) as sign, significant digits and exponent. */
function decimal(text: string): string {
  const match = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(text);
  if (!match) return text;
  const [, sign, whole = '', fraction = '', exponent = '0'] = match;
  let digits = whole + fraction;
  let power = Number(exponent) - fraction.length;
  const leading = digits.search(/[^0]/);
  if (leading < 0) return '0';
  digits = digits.slice(leading);
  const trailing = /0+$/.exec(digits)?.[0].length ?? 0;
  digits = digits.slice(0, digits.length - trailing);
  power += trailing;
  return `${sign}${digits}e${power}`;
}

function sameDecimal(a: string, b: string): boolean {
  return decimal(a) === decimal(b);
}

type Frame = { kind: 'object'; keys: Set<string>; key: string | undefined; expectKey: boolean } | { kind: 'array'; index: number };

/**
 * Follows a token stream and reports the first I-JSON violation. Feed it every token of a document in order;
 * `numberText` is the number literal of the NUMBER token being fed. Several documents (NDJSON) may follow each
 * other: the checker is back at the top level after each.
 */
export class IJsonChecker {
  private readonly stack: Frame[] = [];

  /** The path of the value being read, from the document's root. */
  path(): (string | number)[] {
    return this.stack.map((frame) => (frame.kind === 'array' ? frame.index : (frame.key ?? '')));
  }

  token(token: TokenType, value: unknown, numberText: string): IJsonViolation | undefined {
    const top = this.stack.at(-1);
    switch (token) {
      case TokenType.LEFT_BRACE:
        this.stack.push({ kind: 'object', keys: new Set(), key: undefined, expectKey: true });
        return undefined;
      case TokenType.LEFT_BRACKET:
        this.stack.push({ kind: 'array', index: 0 });
        return undefined;
      case TokenType.RIGHT_BRACE:
      case TokenType.RIGHT_BRACKET:
        this.stack.pop();
        return undefined;
      case TokenType.COMMA:
        if (top?.kind === 'array') top.index += 1;
        else if (top?.kind === 'object') top.expectKey = true;
        return undefined;
      case TokenType.STRING: {
        const text = value as string;
        if (top?.kind === 'object' && top.expectKey) {
          top.expectKey = false;
          top.key = text;
          if (!text.isWellFormed()) return { path: this.path(), message: 'is a key with a lone surrogate (not Unicode text)' };
          if (top.keys.has(text)) return { path: this.path(), message: 'appears more than once' };
          top.keys.add(text);
          return undefined;
        }
        return text.isWellFormed() ? undefined : { path: this.path(), message: 'holds a lone surrogate (not Unicode text)' };
      }
      case TokenType.NUMBER: {
        const problem = numberProblem(numberText);
        return problem ? { path: this.path(), message: problem } : undefined;
      }
      default:
        return undefined;
    }
  }
}

/** A tokenizer that keeps the literal of the number it last read, for the round-trip check. */
class LiteralNumberTokenizer extends Tokenizer {
  numberText = '';
  protected override parseNumber(numberStr: string): number {
    this.numberText = numberStr;
    return Number(numberStr);
  }
}

/**
 * A streaming JSON parser (tokenizer and token parser of @streamparser/json) with the I-JSON check between them.
 * `onViolation` gets the first violation; the tokens after it are still parsed (the caller stops feeding).
 */
export class IJsonParser {
  private readonly tokenizer: LiteralNumberTokenizer;
  private readonly tokenParser: TokenParser;
  private readonly checker = new IJsonChecker();
  violation: IJsonViolation | undefined;

  constructor(options: TokenizerOptions & TokenParserOptions) {
    this.tokenizer = new LiteralNumberTokenizer(options);
    this.tokenParser = new TokenParser(options);
    this.tokenizer.onToken = (parsed: ParsedTokenInfo) => {
      if (!this.violation) this.violation = this.checker.token(parsed.token, parsed.value, this.tokenizer.numberText);
      this.tokenParser.write(parsed);
    };
    this.tokenizer.onEnd = () => {
      if (!this.tokenParser.isEnded) this.tokenParser.end();
    };
    this.tokenParser.onError = (error: Error) => this.tokenizer.error(error);
    this.tokenParser.onEnd = () => {
      if (!this.tokenizer.isEnded) this.tokenizer.end();
    };
  }

  set onValue(callback: TokenParser['onValue']) {
    this.tokenParser.onValue = callback;
  }

  get isEnded(): boolean {
    return this.tokenizer.isEnded && this.tokenParser.isEnded;
  }

  write(text: string): void {
    this.tokenizer.write(text);
  }

  end(): void {
    this.tokenizer.end();
  }
}

/**
 * Parses one JSON document held whole (an NDJSON line, a single memory's body) and checks it, in one pass over its
 * tokens. Throws SyntaxError for text that is not JSON; returns the violation for I-JSON that is not kept.
 */
export function parseIJson(text: string): { value: unknown; violation?: IJsonViolation } {
  const parser = new IJsonParser({});
  let value: unknown;
  let done = false;
  parser.onValue = (info) => {
    if (info.stack.length === 0) {
      value = info.value;
      done = true;
    }
  };
  try {
    parser.write(text);
    if (!parser.isEnded) parser.end();
  } catch (error) {
    throw new SyntaxError((error as Error).message);
  }
  if (!done) throw new SyntaxError('unexpected end of the JSON text');
  return parser.violation ? { value, violation: parser.violation } : { value };
}

/** A violation's path in the dotted form problem details use (`memories.0.metadata.ref`). */
export function dottedPath(prefix: (string | number)[], path: (string | number)[]): string {
  return [...prefix, ...path].map(String).join('.');
}

// Text in which no I-JSON violation can hide, tested before the token pass so that the common NDJSON line is read by
// the native JSON.parse alone: a surrogate can only come from a \uD800-\uDFFF escape (the body is strict UTF-8);
// a number that fails to round-trip has 16 or more significant digits or a three-digit exponent (any decimal of at
// most 15 significant digits within 1e-99..1e99 reads back exactly, and 15-digit integers are below 2^53). The scans
// are native (regular expressions, indexOf): a loop over character codes in JavaScript costs more than JSON.parse.
const surrogateEscape = /\\u[dD][89a-fA-F]/;
/** 16 digits and points from a digit on: where a number token holds one, its mantissa starts with that digit. */
const longMantissa = /\d[\d.]{15}/g;
/** A three-digit exponent; a number token's mantissa ends with a digit. */
const longExponent = /\d[eE][+-]?\d{3}/g;
/** A key's closing quote with whitespace before its colon (`"key" :`); the common `":` is counted with indexOf. */
const spacedKeyEnd = /"\s+:/g;
/** Whether the text may hold one: a serializer's output has no whitespace after a quote outside its strings. */
const quoteThenSpace = /"\s/;

function isNumberChar(code: number): boolean {
  return (code >= 0x30 && code <= 0x39) || code === 0x2e || code === 0x65 || code === 0x45 || code === 0x2b || code === 0x2d;
}

function isJsonSpace(code: number): boolean {
  return code === 0x20 || code === 0x09 || code === 0x0a || code === 0x0d;
}

/**
 * Whether a match of `pattern` may lie in a number token: walking back over number characters and whitespace reaches
 * the start of the text or one of `: , [` (a number can stand nowhere else). Such runs in a string (ids, hashes, hex)
 * usually do not, so those lines keep the fast path; a false alarm only costs the token pass, which decides.
 */
function numberMatch(text: string, pattern: RegExp): boolean {
  pattern.lastIndex = 0;
  for (let match = pattern.exec(text); match; match = pattern.exec(text)) {
    let at = match.index - 1;
    while (at >= 0 && isNumberChar(text.charCodeAt(at))) at -= 1;
    while (at >= 0 && isJsonSpace(text.charCodeAt(at))) at -= 1;
    if (at < 0) return true;
    const before = text.charCodeAt(at);
    if (before === 0x3a || before === 0x2c || before === 0x5b) return true;
  }
  return false;
}

/** How many `"` followed by optional whitespace and `:` the text holds: every key's end, and such text in strings. */
function keyEnds(text: string): number {
  let count = 0;
  for (let at = text.indexOf('":'); at >= 0; at = text.indexOf('":', at + 2)) count += 1;
  return quoteThenSpace.test(text) ? count + (text.match(spacedKeyEnd)?.length ?? 0) : count;
}

/** The keys of a parsed value at every depth; -1 past 64 levels (the token pass then reads it without recursion). */
function countKeys(value: unknown, depth = 0): number {
  if (value === null || typeof value !== 'object') return 0;
  if (depth > 64) return -1;
  let count = 0;
  if (Array.isArray(value)) {
    for (const child of value) {
      const inner = countKeys(child, depth + 1);
      if (inner < 0) return -1;
      count += inner;
    }
    return count;
  }
  for (const key in value) {
    const inner = countKeys((value as Record<string, unknown>)[key], depth + 1);
    if (inner < 0) return -1;
    count += 1 + inner;
  }
  return count;
}

/**
 * `parseIJson` for a line of NDJSON, fast where the text cannot hold a violation: JSON.parse, then the token pass only
 * when the text may have a surrogate escape or a long number, or has more `"...":` key ends than the parsed value has
 * keys (a duplicate key, or the same characters inside a string).
 */
export function parseIJsonLine(text: string): { value: unknown; violation?: IJsonViolation } {
  const value = JSON.parse(text) as unknown;
  if (!surrogateEscape.test(text) && !numberMatch(text, longMantissa) && !numberMatch(text, longExponent) && keyEnds(text) === countKeys(value)) {
    return { value };
  }
  return parseIJson(text);
}

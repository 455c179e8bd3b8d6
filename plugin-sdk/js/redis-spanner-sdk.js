// Write Redis Spanner cache plugins in JavaScript (componentize-js).
//
// An ES module with no imports, so it runs unchanged inside a component and
// under plain Node for tests. It mirrors the Rust SDK (`plugin-sdk/src`):
// the same Redis keys, the same JSON for a row, byte for byte.
//
// How componentize-js hands WIT types to JavaScript (world `cache-plugin`,
// package `redis-spanner:plugin@0.4.0`):
//
// - variant `value`: `{tag: 'int64', val: 42n}`, `{tag: 'float32', val:
//   0.10000000149011612}`; `{tag: 'null'}` has no val.
// - enums (`change-kind`, `event-source`): the case name as a string, e.g.
//   `'delete'`.
// - record fields in lowerCamelCase: `newValues`, `commitMicros`, `ttlMs`, ...
// - s64/u64: BigInt; u32, f32, f64: number; list<u8>: Uint8Array;
//   tuple<string, string>: a two-element array; option<T>: T or undefined.
// - Exports are named in lowerCamelCase: `init`, `onChanges`,
//   `onCacheEvents`.
// - An export returning `result<T, string>` returns T for ok; to return err,
//   throw a string (or an object whose `payload` is the string). Throwing an
//   Error or anything else out of an export traps the instance instead;
//   `definePlugin` turns every thrown value into a string.
// - An import returning `result<T, string>` returns T for ok and throws an
//   Error whose `payload` is the string for err.
// - console.log and console.error go nowhere (the host gives plugins no
//   stdio): use the host's `log`.
//
// The host's functions are imported by the plugin, not by this module:
//
//   import { config, log } from 'redis-spanner:plugin/host@0.4.0';
//   import * as crypto from 'redis-spanner:plugin/crypto@0.4.0';
//   useCrypto(crypto); // for `seal` and `keyedHash`
//
// A batch arrives as one byte buffer: the JSON text of the compact batch
// (docs/BATCH-TEXT.md: each table's column names and each transaction once,
// each change's values by position). `definePlugin` decodes it with
// `decodeBatch` into change objects that name things (`keys`, `newValues`
// and `oldValues` are built when first read):
//
//   {
//     table: 'Users',                       // the table's name
//     kind: 'update',                       // insert, update, delete, snapshot
//     keys: [{name: 'UserId', value: {tag: 'int64', val: 42n}}],
//     newValues: [{name: 'Name', value: {tag: 'string', val: 'Ada'}}],
//     oldValues: [],
//     commitMicros: 1700000000000000n,
//     transactionId: '...',
//     recordSequence: 0,                    // a number (a string in 0.1.0)
//     transactionTag: '',
//   }
//
// JSON model used by `toJson`, `rowJson`, `parseJson` and `stringify`, the
// counterpart of serde_json's `Value`:
//
// | JavaScript          | serde_json           | text                  |
// |---------------------|----------------------|-----------------------|
// | null                | Null                 | null                  |
// | boolean             | Bool                 | true / false          |
// | bigint              | Number (i64 or u64)  | 42                    |
// | number              | Number (f64)         | 1.0, 1.5e-7, 1e+21    |
// | string              | String               | "..."                 |
// | Array               | Array                | [...]                 |
// | object (or Map)     | Object (BTreeMap)    | {...}, keys sorted    |
//
// So integers are BigInts (`1n` prints `1`) and JavaScript numbers are
// floats (`1` prints `1.0`), exactly as a Rust plugin would see them.

/** Version of the WIT package (`redis-spanner:plugin`) this SDK implements. */
export const API_VERSION = '0.4.0';

// ---------------------------------------------------------------------------
// Keys

/**
 * Joins `parts` with `:` into a Redis key, escaping each part so different
 * parts always give different keys and no part can put a Redis Cluster hash
 * tag in the key: inside a part `\` becomes `\\`, `:` becomes `\:`, `{`
 * becomes `\(` and `}` becomes `\)`. Same as Rust `key`.
 *
 * key(['users', '42']) === 'users:42'
 * key(['files', 'C:\\tmp']) === 'files:C\\:\\\\tmp'
 * key(['users', '{eu}7']) === 'users:\\(eu\\)7'
 */
const KEY_ESCAPES = { ':': '\\:', '\\': '\\\\', '{': '\\(', '}': '\\)' };

export function key(parts) {
  return keyWithTag(parts, -1);
}

/**
 * `key`, with part number `tag` (from 0) as the key's Redis Cluster hash
 * tag: escaped like any part, then put in braces, exactly like the Rust
 * SDK's `key_with_tag`. An empty tag part, or a `tag` past the last part,
 * gives the plain key: `keyWithTag(['orders', 42, 7], 1)` is `orders:{42}:7`.
 */
export function keyWithTag(parts, tag) {
  const index = typeof tag === 'bigint' ? Number(tag) : tag;
  if (!Number.isInteger(index)) throw new TypeError(`key tag must be an integer index, not ${typeof tag}`);
  if (!Array.isArray(parts)) throw new TypeError(`key parts must be an array, not ${typeof parts}`);
  let key = '';
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i];
    // Strings and integers, as in the Python SDK.
    if (typeof part !== 'string' && typeof part !== 'bigint' && !Number.isInteger(part)) {
      throw new TypeError(`key part must be a string or an integer, not ${typeof part}`);
    }
    let escaped = String(part);
    if (KEY_SPECIAL.test(escaped)) escaped = escaped.replace(KEY_SPECIALS, (c) => KEY_ESCAPES[c]);
    if (i > 0) key += ':';
    key += i === index && escaped !== '' ? `{${escaped}}` : escaped;
  }
  return key;
}

const KEY_SPECIAL = /[:\\{}]/;
const KEY_SPECIALS = /[:\\{}]/g;

const KEY_UNESCAPES = { '\\': '\\', ':': ':', '(': '{', ')': '}' };

/**
 * The parts of a key `key` made, unescaped, exactly like the Rust SDK's
 * `split_key`: `splitKey(key(parts))` is `parts` (one empty part for the
 * empty key), e.g. to read the row's key back out of a missed key.
 * undefined for a key `key` does not make: a `\` at its end or before a
 * character other than `\`, `:`, `(` and `)`, or an unescaped `{` or `}` (a
 * hash tag of `keyWithTag`: take it apart yourself).
 *
 * splitKey('orders:eu\\:\\(1\\):7') → ['orders', 'eu:{1}', '7']
 */
export function splitKey(key) {
  const parts = [''];
  for (let i = 0; i < key.length; i++) {
    let c = key[i];
    if (c === ':') {
      parts.push('');
      continue;
    }
    if (c === '{' || c === '}') return undefined;
    if (c === '\\') {
      c = Object.hasOwn(KEY_UNESCAPES, key[i + 1]) ? KEY_UNESCAPES[key[i + 1]] : undefined;
      if (c === undefined) return undefined;
      i++;
    }
    parts[parts.length - 1] += c;
  }
  return parts;
}

// ---------------------------------------------------------------------------
// Batches

const KINDS = ['insert', 'update', 'delete', 'snapshot'];

/**
 * Decodes a batch into an array of change objects (see the top of this
 * module), one per change, in batch order. `batch` is what contract 0.4.0
 * hands `onChanges`: the UTF-8 JSON text (a Uint8Array, or a string) of the
 * compact batch (docs/BATCH-TEXT.md), read with the engine's own
 * `JSON.parse`. Table and column names are the batch's strings, shared, not
 * copied; values become value variants only when read (`keys`, `newValues`,
 * `oldValues`), and `keyValue`, `newValue`, `oldValue` and `rowJson` read
 * them from the text directly. A change that points outside the batch (a
 * table or transaction index out of range, a key count that is not the
 * table's, an unknown kind) is an error naming the change; a bad column
 * index or value is one when it is read.
 */
export function decodeBatch(batch) {
  let parts;
  try {
    parts = JSON.parse(typeof batch === 'string' ? batch : TEXT_DECODER.decode(batch));
  } catch (error) {
    throw new TypeError(`the batch is not the JSON text of contract ${API_VERSION}: ${errorText(error)}`);
  }
  if (!Array.isArray(parts) || parts.length !== 3 || !parts.every(Array.isArray)) {
    throw new TypeError(`the batch is not the JSON text of contract ${API_VERSION}: not [tables, transactions, changes]`);
  }
  const [tables, transactions, changes] = parts;
  const decoded = new Array(changes.length);
  for (let index = 0; index < changes.length; index++) {
    decoded[index] = decodeChange(changes[index], index, tables, transactions);
  }
  return decoded;
}

const TEXT_DECODER = new TextDecoder('utf-8', { fatal: true });

function decodeChange(wire, index, tables, transactions) {
  if (!Array.isArray(wire) || wire.length !== 7) {
    throw new RangeError(`change ${index}: not a change of 7 fields`);
  }
  const [tableIndex, kindIndex, keys, newValues, oldValues, transactionIndex, sequence] = wire;
  const table = entry(tables, tableIndex);
  if (table === undefined) {
    throw new RangeError(`change ${index}: table index ${tableIndex} is outside the batch's ${tables.length} tables`);
  }
  const transaction = entry(transactions, transactionIndex);
  if (transaction === undefined) {
    throw new RangeError(
      `change ${index} (table ${table[0]}): transaction index ${transactionIndex} is outside the batch's ${transactions.length} transactions`,
    );
  }
  const kind = entry(KINDS, kindIndex);
  if (kind === undefined) throw new RangeError(`change ${index} (table ${table[0]}): kind ${kindIndex} is not a change kind`);
  if (!Number.isInteger(sequence) || sequence < 0 || sequence > 0xffffffff) {
    throw new RangeError(`change ${index} (table ${table[0]}): record sequence ${JSON.stringify(sequence)} is not a number below 2^32`);
  }
  if (!Array.isArray(keys) || keys.length !== table[1].length) {
    throw new RangeError(
      `change ${index} (table ${table[0]}): ${keys?.length} key values for ${table[1].length} key columns`,
    );
  }
  let micros;
  try {
    micros = transactionMicros(transaction);
  } catch (error) {
    throw new RangeError(`change ${index} (table ${table[0]}): ${error.message}`);
  }
  return new BatchChange(table, kind, keys, newValues, oldValues, transaction, sequence, micros);
}

/** `list[index]` for an integer index inside `list`, else undefined. */
function entry(list, index) {
  return Number.isInteger(index) && index >= 0 && index < list.length ? list[index] : undefined;
}

/**
 * A change of a batch: its table, kind and transaction fields are plain
 * properties; `keys`, `newValues` and `oldValues` are getters that name the
 * text's values on first read (and may be replaced). Being getters, they
 * are not copied by `{...change}` or `Object.assign`: copy them by name.
 */
class BatchChange {
  constructor(table, kind, keys, newValues, oldValues, transaction, sequence, micros) {
    this.table = table[0];
    this.kind = kind;
    this.commitMicros = micros;
    this.transactionId = transaction[0];
    this.recordSequence = sequence;
    this.transactionTag = transaction[1];
    this._wire = { table, keys, newValues, oldValues };
    this._keys = undefined;
    this._newValues = undefined;
    this._oldValues = undefined;
  }

  get keys() {
    if (this._keys === undefined) {
      const { table, keys } = this._wire;
      this._keys = keys.map((raw, i) => ({ name: table[1][i], value: this._value(raw) }));
    }
    return this._keys;
  }

  set keys(columns) {
    this._keys = columns;
  }

  get newValues() {
    if (this._newValues === undefined) this._newValues = this._named(this._wire.newValues);
    return this._newValues;
  }

  set newValues(columns) {
    this._newValues = columns;
  }

  get oldValues() {
    if (this._oldValues === undefined) this._oldValues = this._named(this._wire.oldValues);
    return this._oldValues;
  }

  set oldValues(columns) {
    this._oldValues = columns;
  }

  /** Flat `[column, value, …]` cells as named columns. */
  _named(cells) {
    const columns = new Array(cells.length >> 1);
    for (let i = 0; i < cells.length; i += 2) {
      columns[i >> 1] = { name: this._column(cells[i]), value: this._value(cells[i + 1]) };
    }
    return columns;
  }

  /** The name of column index `column` of this change's table. */
  _column(column) {
    const { table } = this._wire;
    const name = entry(table[2], column);
    if (name === undefined) {
      // No change prefix: `eachChange` adds it to what `onChange` throws.
      throw new RangeError(`column index ${column} is outside table ${table[0]}'s ${table[2].length} columns`);
    }
    return name;
  }

  /** A value of the text as a value variant, or an error naming the change. */
  _value(raw) {
    const value = textValue(raw);
    if (value === undefined) {
      throw new TypeError(`${JSON.stringify(raw)} is not a value of the batch text`);
    }
    return value;
  }

  /** The raw value of column `name` among flat `cells`, or undefined. */
  _cell(cells, name) {
    const column = this._wire.table[2].indexOf(name);
    if (column < 0) return undefined;
    for (let i = 0; i < cells.length; i += 2) {
      if (cells[i] === column) return cells[i + 1];
    }
    return undefined;
  }
}

function transactionMicros(transaction) {
  // The text cannot hold a bigint: one there is this function's own.
  if (typeof transaction[3] === 'bigint') return transaction[3];
  if (!Array.isArray(transaction) || transaction.length !== 3) {
    throw new RangeError(`transaction ${JSON.stringify(transaction)} is not [id, tag, "commit micros"]`);
  }
  const micros = typeof transaction[2] === 'string' ? int64Of(transaction[2]) : undefined;
  if (micros === undefined) {
    throw new RangeError(`commit micros ${JSON.stringify(transaction[2])} is not an integer`);
  }
  transaction.push(micros); // shared by the transaction's changes
  return micros;
}

const TEXT_VALUES = {
  s: (text) => ({ tag: 'string', val: text }),
  i: (text) => {
    const val = int64Of(text);
    return val === undefined ? undefined : { tag: 'int64', val };
  },
  f: (text) => ({ tag: 'float64', val: Number(text) }),
  g: (text) => ({ tag: 'float32', val: Number(text) }),
  b: (text) => {
    const bytes = fromBase64(text);
    return bytes === undefined ? undefined : { tag: 'bytes', val: bytes };
  },
  t: (text) => ({ tag: 'timestamp', val: text }),
  d: (text) => ({ tag: 'date', val: text }),
  n: (text) => ({ tag: 'numeric', val: text }),
  j: (text) => ({ tag: 'json', val: text }),
};

/**
 * An INT64's decimal text (an optional `-` and ASCII digits) as a BigInt,
 * or undefined: `BigInt` alone would also read hexadecimal, binary, signs
 * and spaces, which the Rust and Python readers refuse or read otherwise.
 */
function int64Of(text) {
  return /^-?[0-9]+$/.test(text) ? BigInt(text) : undefined;
}

/** A value of the batch text as a value variant, or undefined. */
function textValue(raw) {
  if (raw === null) return { tag: 'null' };
  if (raw === true || raw === false) return { tag: 'bool', val: raw };
  if (typeof raw !== 'string') return undefined;
  const convert = TEXT_VALUES[raw[0]];
  return convert === undefined ? undefined : convert(raw.slice(1));
}

/** A value of the batch text as `toJson` converts its variant. */
function textJson(raw, int64AsString) {
  if (raw === null || raw === true || raw === false) return raw;
  if (typeof raw === 'string') {
    const text = raw.slice(1);
    switch (raw[0]) {
      case 's':
      case 't':
      case 'd':
      case 'n':
        return text;
      case 'b': {
        // Read and written again, as the named value is: checked, and the
        // standard base64 the named path writes.
        const bytes = fromBase64(text);
        return bytes === undefined ? undefined : base64(bytes);
      }
      case 'i': {
        const val = int64Of(text);
        // As the named path writes the BigInt it reads.
        return val === undefined || !int64AsString ? val : String(val);
      }
      case 'f':
        return floatJson(Number(text));
      case 'g':
        return floatJson(shortestF32(Number(text)));
      case 'j':
        try {
          return parseJson(text);
        } catch {
          return text;
        }
    }
  }
  return undefined;
}

// ---------------------------------------------------------------------------
// Columns and values

function find(columns, name) {
  const column = columns.find((c) => c.name === name);
  return column === undefined ? undefined : column.value;
}

/** The value variant of primary key column `name`, or undefined. */
export function keyValue(change, name) {
  if (change instanceof BatchChange && change._keys === undefined) {
    const { table, keys } = change._wire;
    const at = table[1].indexOf(name);
    return at < 0 ? undefined : change._value(keys[at]);
  }
  return find(change.keys, name);
}

/** The value variant of non-key column `name` after the change, or undefined. */
export function newValue(change, name) {
  if (change instanceof BatchChange && change._newValues === undefined) {
    const raw = change._cell(change._wire.newValues, name);
    return raw === undefined ? undefined : change._value(raw);
  }
  return find(change.newValues, name);
}

/** The value variant of non-key column `name` before the change, or undefined. */
export function oldValue(change, name) {
  if (change instanceof BatchChange && change._oldValues === undefined) {
    const raw = change._cell(change._wire.oldValues, name);
    return raw === undefined ? undefined : change._value(raw);
  }
  return find(change.oldValues, name);
}

const accessor = (tag) => (value) => (value !== undefined && value.tag === tag ? value.val : undefined);

// Typed accessors, like Rust `Value::as_*`: the payload of a value of that
// type, or undefined for any other type, NULL or a missing column.
/** The BigInt of an INT64 value. */
export const asI64 = (value) => (value !== undefined && value.tag === 'int64' ? BigInt(value.val) : undefined);
/** The boolean of a BOOL value. */
export const asBool = accessor('bool');
/** The number of a FLOAT64 value, or of a FLOAT32 value (its exact value). */
export const asF64 = (value) =>
  value !== undefined && (value.tag === 'float64' || value.tag === 'float32') ? value.val : undefined;
/** The number of a FLOAT32 value (not of FLOAT64). */
export const asF32 = accessor('float32');
/** The text of a STRING value (not of TIMESTAMP, DATE, NUMERIC or JSON). */
export const asString = accessor('string');
/** The Uint8Array of a BYTES value. */
export const asBytes = accessor('bytes');
/** The RFC 3339 text of a TIMESTAMP value. */
export const asTimestamp = accessor('timestamp');
/** The YYYY-MM-DD text of a DATE value. */
export const asDate = accessor('date');
/** The decimal text of a NUMERIC value. */
export const asNumeric = accessor('numeric');
/** The text of a JSON (or ARRAY) value; `toJson` parses it. */
export const asJsonText = accessor('json');

/**
 * Any value as plain text, e.g. for a Redis key, like Rust `Value::to_text`:
 * strings, timestamps, dates, numerics and JSON as their text, numbers and
 * booleans in JSON notation (`1.0`, `"NaN"` without quotes), bytes as base64;
 * undefined for NULL.
 */
export function toText(value) {
  switch (value.tag) {
    case 'null':
      return undefined;
    case 'string':
    case 'timestamp':
    case 'date':
    case 'numeric':
    case 'json':
      return value.val;
    default: {
      const json = toJson(value);
      return typeof json === 'string' ? json : stringify(json);
    }
  }
}

const JSON_NUMBER = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;
const FLOAT_WORDS = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity };
const TEXT_TYPES = { STRING: 'string', DATE: 'date', TIMESTAMP: 'timestamp', NUMERIC: 'numeric' };

/**
 * The value of a key column of type `spannerType` ('INT64', 'STRING',
 * 'BYTES', 'DATE', 'TIMESTAMP', 'NUMERIC', 'BOOL' or 'FLOAT64') whose
 * `toText` is `text`, exactly like Rust `Value::from_text`: the inverse of
 * `toText` for key columns, e.g. to turn the parts of a missed key
 * (`splitKey`) back into the row's key.
 *
 * undefined when `text` is not such a value: an INT64 must be written as
 * `toText` writes it (decimal, no `+`, no leading zero, within 64 bits), a
 * BOOL as `true` or `false`, a FLOAT64 as a finite JSON number or `NaN`,
 * `Infinity`, `-Infinity`, BYTES as standard base64 with padding. STRING,
 * DATE, TIMESTAMP and NUMERIC take any text, in their own tags. Any other
 * type gives undefined.
 *
 * valueFromText('INT64', '-42') → {tag: 'int64', val: -42n}
 */
export function valueFromText(spannerType, text) {
  if (Object.hasOwn(TEXT_TYPES, spannerType)) return { tag: TEXT_TYPES[spannerType], val: text };
  switch (spannerType) {
    case 'INT64': {
      const int = int64Of(text);
      if (int === undefined) return undefined;
      const fits = int >= I64_MIN && int <= -I64_MIN - 1n;
      return fits && String(int) === text ? { tag: 'int64', val: int } : undefined;
    }
    case 'BOOL':
      return text === 'true' || text === 'false' ? { tag: 'bool', val: text === 'true' } : undefined;
    case 'FLOAT64': {
      if (Object.hasOwn(FLOAT_WORDS, text)) return { tag: 'float64', val: FLOAT_WORDS[text] };
      const float = JSON_NUMBER.test(text) ? Number(text) : Infinity;
      return Number.isFinite(float) ? { tag: 'float64', val: float } : undefined;
    }
    case 'BYTES': {
      const bytes = fromBase64(text);
      return bytes !== undefined && base64(bytes) === text ? { tag: 'bytes', val: bytes } : undefined;
    }
    default:
      return undefined;
  }
}

/** The bytes of standard base64 with `=` padding, or undefined. */
function fromBase64(text) {
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) return undefined;
  const digits = text.replace(/=+$/, '');
  const bytes = new Uint8Array((digits.length * 3) >> 2);
  let bits = 0;
  let count = 0;
  let at = 0;
  for (const c of digits) {
    bits = ((bits << 6) | BASE64.indexOf(c)) & 0xffffff;
    count += 6;
    if (count >= 8) {
      count -= 8;
      bytes[at++] = (bits >> count) & 0xff;
    }
  }
  return bytes;
}

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Standard base64 with `=` padding. */
export function base64(bytes) {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += BASE64[n >> 18] + BASE64[(n >> 12) & 63] + BASE64[(n >> 6) & 63] + BASE64[n & 63];
  }
  if (i + 1 === bytes.length) {
    const n = bytes[i] << 16;
    out += BASE64[n >> 18] + BASE64[(n >> 12) & 63] + '==';
  } else if (i + 2 === bytes.length) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += BASE64[n >> 18] + BASE64[(n >> 12) & 63] + BASE64[(n >> 6) & 63] + '=';
  }
  return out;
}

/**
 * Converts a WIT `value` to the JSON model, like Rust `Value::to_json`:
 * INT64 → bigint, FLOAT64 → number, FLOAT32 → the number its shortest
 * decimal denotes (`shortestF32`: 0.1, not 0.10000000149011612), non-finite
 * floats → "NaN", "Infinity", "-Infinity" as strings, BYTES → base64,
 * TIMESTAMP/DATE/NUMERIC/STRING → string, JSON → the parsed document (kept as
 * its text if it does not parse).
 */
export function toJson(value) {
  switch (value.tag) {
    case 'null':
      return null;
    case 'bool':
      return value.val;
    case 'int64':
      return BigInt(value.val);
    case 'float32':
      return floatJson(shortestF32(value.val));
    case 'float64':
      return floatJson(value.val);
    case 'string':
    case 'timestamp':
    case 'date':
    case 'numeric':
      return value.val;
    case 'bytes':
      return base64(value.val);
    case 'json':
      try {
        return parseJson(value.val);
      } catch {
        return value.val;
      }
    default:
      throw new TypeError(`unknown value tag ${JSON.stringify(value.tag)}`);
  }
}

/** A finite float as itself; the others as Spanner spells them in JSON. */
function floatJson(f) {
  if (Number.isFinite(f)) return f;
  if (Number.isNaN(f)) return 'NaN';
  return f > 0 ? 'Infinity' : '-Infinity';
}

/**
 * The row as a JSON object of the key columns and the new values, each named
 * after its column; a later column with a repeated name wins. Like Rust
 * `RowChange::row_json`. `stringify` sorts the members.
 */
export function rowJson(change, options = {}) {
  if (change instanceof BatchChange && change._keys === undefined && change._newValues === undefined) {
    return rowJsonOfText(change, Boolean(options.int64AsString));
  }
  return columnsJson([...change.keys, ...change.newValues], options);
}

/** `rowJson` of a change whose values are still the batch text's. */
function rowJsonOfText(change, int64AsString) {
  const { table, keys, newValues } = change._wire;
  const object = Object.create(null);
  const json = (raw) => {
    const value = textJson(raw, int64AsString);
    return value === undefined ? change._value(raw) : value; // _value throws the error
  };
  for (let i = 0; i < keys.length; i++) object[table[1][i]] = json(keys[i]);
  for (let i = 0; i < newValues.length; i += 2) object[change._column(newValues[i])] = json(newValues[i + 1]);
  return object;
}

/**
 * A JSON object with one member per column, valued by `toJson`. With
 * `{ int64AsString: true }`, INT64 columns are decimal strings, like the Rust
 * SDK's `row_json_int64_as_string` (for readers using `JSON.parse`, which
 * rounds integers beyond 2^53).
 */
export function columnsJson(columns, { int64AsString = false } = {}) {
  const object = Object.create(null);
  for (const column of columns) {
    object[column.name] =
      int64AsString && column.value.tag === 'int64' ? String(column.value.val) : toJson(column.value);
  }
  return object;
}

// ---------------------------------------------------------------------------
// FLOAT32 as its shortest decimal

const F32 = new Float32Array(1);
const F32_BITS = new Uint32Array(F32.buffer);
const F64 = new Float64Array(1);
const F64_BITS = new BigUint64Array(F64.buffer);

/**
 * The number that the shortest decimal reading back as float32 `value`
 * denotes, like Rust's `f32` Display then parsed as f64: 0.1 for the float32
 * nearest 0.1 (whose exact value is 0.10000000149011612), 16777216 for
 * 2^24, 1e-45 for the smallest subnormal. Of the shortest decimals, the one
 * closest to the exact value wins. NaN, infinities and zeros come back as
 * they are; `value` is rounded to float32 first.
 */
export function shortestF32(value) {
  const x = Math.fround(value);
  if (x === 0 || !Number.isFinite(x)) return x;
  const shortest = shortestPositiveF32(Math.abs(x));
  return x < 0 ? -shortest : shortest;
}

function shortestPositiveF32(x) {
  const bounds = f32Bounds(x);
  // Whether some decimal of n digits reads back as x only grows with n (one
  // of n digits is one of n + 1), so bisect for the fewest. Nine digits
  // always read back.
  let fewest = 1;
  let most = 9;
  let found;
  while (fewest < most) {
    const digits = (fewest + most) >> 1;
    const decimal = decimalWithDigits(x, digits, bounds);
    if (decimal === undefined) {
      fewest = digits + 1;
    } else {
      most = digits;
      found = decimal;
    }
  }
  return found ?? Number(x.toPrecision(9));
}

/**
 * The decimals reading back as positive float32 `x`: those strictly
 * between `low` and `high`, or on them when `inclusive` (x's last bit is 0,
 * so a tie rounds to x). Like Rust's float decoding, the interval below a
 * power of two is half as wide as above it, the smallest normal included.
 */
function f32Bounds(x) {
  F32[0] = x;
  const bits = F32_BITS[0];
  const gap = bits === 0x7f7fffff ? x - f32FromBits(bits - 1) : f32FromBits(bits + 1) - x;
  const powerOfTwo = (bits & 0x7fffff) === 0;
  return {
    low: x - (powerOfTwo ? gap / 4 : gap / 2),
    high: x + gap / 2,
    inclusive: (bits & 1) === 0,
    powerOfTwo,
  };
}

function f32FromBits(bits) {
  F32_BITS[0] = bits;
  return F32[0];
}

/**
 * Of the `digits`-digit decimals reading back as `x`, the closest to it (the
 * higher on a tie), or undefined.
 */
function decimalWithDigits(x, digits, bounds) {
  // toPrecision rounds the exact value, ties upwards.
  const nearest = Number(x.toPrecision(digits));
  if (!bounds.powerOfTwo && nearest !== bounds.low && nearest !== bounds.high) {
    // Strictly inside or outside: rounding to float32 tells which. The
    // interval is symmetric, so the other neighbour, farther from x, cannot
    // read back when the nearest does not.
    return Math.fround(nearest) === x ? nearest : undefined;
  }
  return exactDecimalWithDigits(x, digits, bounds);
}

/**
 * `decimalWithDigits` in exact arithmetic, for a power of two (whose
 * interval is lopsided, so the farther neighbour may read back when the
 * nearest does not) and for a decimal that reads as a bound of the interval.
 */
function exactDecimalWithDigits(x, digits, bounds) {
  const [mantissa, e] = x.toExponential(digits - 1).split('e');
  let significand = Number(mantissa.replace('.', ''));
  let scale = Number(e) - digits + 1;
  if (significand === 10 ** (digits - 1) && Number(e) > Number(x.toExponential().split('e')[1])) {
    // Rounded up to a power of ten above x: keep the scale of x's digits.
    significand *= 10;
    scale -= 1;
  }
  const nearest = Number(`${significand}e${scale}`);
  if (readsBack(significand, scale, nearest, bounds)) return nearest;
  const other = significand + (nearest < x ? 1 : -1);
  const next = Number(`${other}e${scale}`);
  return readsBack(other, scale, next, bounds) ? next : undefined;
}

/** Whether decimal `significand`e`scale`, which reads as double `f`, is within `bounds`. */
function readsBack(significand, scale, f, { low, high, inclusive }) {
  const fromLow = sideOf(significand, scale, f, low);
  const fromHigh = sideOf(significand, scale, f, high);
  return (fromLow > 0 || (inclusive && fromLow === 0)) && (fromHigh < 0 || (inclusive && fromHigh === 0));
}

/**
 * The sign of decimal `significand`e`scale` minus double `bound`, given the
 * double `f` the decimal reads as. Only when `f` is `bound` itself does the
 * decimal need comparing exactly.
 */
function sideOf(significand, scale, f, bound) {
  if (f !== bound) return f < bound ? -1 : 1;
  F64[0] = bound;
  const bits = F64_BITS[0];
  const exponentField = Number(bits >> 52n);
  const fraction = bits & 0xfffffffffffffn;
  // bound = m * 2^e exactly.
  const m = exponentField === 0 ? fraction : fraction | 0x10000000000000n;
  const e = (exponentField === 0 ? 1 : exponentField) - 1075;
  let left = BigInt(significand);
  let right = m;
  if (scale >= 0) left *= 10n ** BigInt(scale);
  else right *= 10n ** BigInt(-scale);
  if (e >= 0) right *= 2n ** BigInt(e);
  else left *= 2n ** BigInt(-e);
  return left < right ? -1 : left > right ? 1 : 0;
}

// ---------------------------------------------------------------------------
// JSON text, as serde_json reads it

const U64_MAX = 0xffffffffffffffffn;

/**
 * Parses JSON text exactly as `serde_json::from_str::<Value>` (with the
 * `float_roundtrip` feature the Rust SDK uses) does: integers that fit
 * i64/u64 become bigints, every other number the nearest double (`Number`
 * rounds correctly, as serde_json then does); later duplicate members win; nesting
 * deeper than 127 levels, lone surrogate escapes, raw control characters,
 * numbers out of f64 range and trailing characters are errors
 * (SyntaxError).
 */
export function parseJson(text) {
  let i = 0;
  const n = text.length;
  const fail = (what) => {
    throw new SyntaxError(`${what} at offset ${i}`);
  };
  const digitAt = (j) => {
    const c = text.charCodeAt(j);
    return c >= 48 && c <= 57 ? c - 48 : -1;
  };
  const skipWhitespace = () => {
    for (; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c !== 0x20 && c !== 0x0a && c !== 0x09 && c !== 0x0d) break;
    }
  };

  const digits = () => {
    const start = i;
    while (digitAt(i) >= 0) i++;
    if (i === start) fail('invalid number');
  };

  const number = (positive) => {
    const start = i;
    if (digitAt(i) === 0) {
      i++;
      if (digitAt(i) >= 0) fail('invalid number');
    } else {
      digits();
    }
    let integral = true;
    if (text[i] === '.') {
      integral = false;
      i++;
      digits();
    }
    if (text[i] === 'e' || text[i] === 'E') {
      integral = false;
      i++;
      if (text[i] === '+' || text[i] === '-') i++;
      digits();
    }
    const literal = text.slice(start, i);
    if (integral) {
      const significand = BigInt(literal);
      if (positive && significand <= U64_MAX) return significand;
      // -0 and anything below i64::MIN become floats.
      if (!positive && significand !== 0n && significand <= 0x8000000000000000n) return -significand;
    }
    const f = Number(literal);
    if (!Number.isFinite(f)) fail('number out of range');
    return positive ? f : -f;
  };

  const hex4 = () => {
    let v = 0;
    for (let k = 0; k < 4; k++, i++) {
      const c = text.charCodeAt(i);
      let h;
      if (c >= 48 && c <= 57) h = c - 48;
      else if (c >= 97 && c <= 102) h = c - 87;
      else if (c >= 65 && c <= 70) h = c - 55;
      else fail(i < n ? 'invalid escape' : 'EOF while parsing a string');
      v = v * 16 + h;
    }
    return v;
  };

  const string = () => {
    i++; // opening quote
    let out = '';
    let start = i;
    for (;;) {
      if (i >= n) fail('EOF while parsing a string');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c === 0x5c) {
        out += text.slice(start, i);
        i++;
        const e = text[i++];
        switch (e) {
          case '"': out += '"'; break;
          case '\\': out += '\\'; break;
          case '/': out += '/'; break;
          case 'b': out += '\b'; break;
          case 'f': out += '\f'; break;
          case 'n': out += '\n'; break;
          case 'r': out += '\r'; break;
          case 't': out += '\t'; break;
          case 'u': {
            const u = hex4();
            if (u >= 0xdc00 && u <= 0xdfff) fail('lone leading surrogate in hex escape');
            if (u >= 0xd800 && u <= 0xdbff) {
              if (text[i] !== '\\' || text[i + 1] !== 'u') fail('unexpected end of hex escape');
              i += 2;
              const low = hex4();
              if (low < 0xdc00 || low > 0xdfff) fail('lone leading surrogate in hex escape');
              out += String.fromCharCode(u, low);
            } else {
              out += String.fromCharCode(u);
            }
            break;
          }
          default:
            fail(e === undefined ? 'EOF while parsing a string' : 'invalid escape');
        }
        start = i;
        continue;
      }
      if (c < 0x20) fail('control character while parsing a string');
      i++;
    }
  };

  const literal = (word, result) => {
    if (text.startsWith(word, i)) {
      i += word.length;
      return result;
    }
    return fail('expected value');
  };

  const value = (depth) => {
    skipWhitespace();
    switch (text[i]) {
      case 'n':
        return literal('null', null);
      case 't':
        return literal('true', true);
      case 'f':
        return literal('false', false);
      case '"':
        return string();
      case '-':
        i++;
        return number(false);
      case '[': {
        if (--depth === 0) fail('recursion limit exceeded');
        i++;
        const array = [];
        skipWhitespace();
        if (text[i] === ']') {
          i++;
          return array;
        }
        for (;;) {
          array.push(value(depth));
          skipWhitespace();
          if (text[i] === ',') i++;
          else if (text[i] === ']') {
            i++;
            return array;
          } else fail('expected , or ]');
        }
      }
      case '{': {
        if (--depth === 0) fail('recursion limit exceeded');
        i++;
        const object = Object.create(null);
        skipWhitespace();
        if (text[i] === '}') {
          i++;
          return object;
        }
        for (;;) {
          skipWhitespace();
          if (text[i] !== '"') fail('key must be a string');
          const name = string();
          skipWhitespace();
          if (text[i] !== ':') fail('expected :');
          i++;
          object[name] = value(depth);
          skipWhitespace();
          if (text[i] === ',') i++;
          else if (text[i] === '}') {
            i++;
            return object;
          } else fail('expected , or }');
        }
      }
      default:
        if (digitAt(i) >= 0) return number(true);
        return fail(i < n ? 'expected value' : 'EOF while parsing a value');
    }
  };

  const result = value(128);
  skipWhitespace();
  if (i < n) fail('trailing characters');
  return result;
}

// ---------------------------------------------------------------------------
// JSON text, as serde_json writes it

/**
 * Orders strings by Unicode code point, which is the byte order of their
 * UTF-8 (Rust's `str` ordering), not JavaScript's UTF-16 code unit order.
 */
export function compareCodePoints(a, b) {
  const len = Math.min(a.length, b.length);
  for (let k = 0; k < len; k++) {
    let x = a.charCodeAt(k);
    let y = b.charCodeAt(k);
    if (x !== y) {
      // Surrogates (astral characters) sort after every other BMP unit.
      if (x >= 0xd800) x += x <= 0xdfff ? 0x2000 : -0x800;
      if (y >= 0xd800) y += y <= 0xdfff ? 0x2000 : -0x800;
      return x - y;
    }
  }
  return a.length - b.length;
}

const SHORT_ESCAPES = { '"': '\\"', '\\': '\\\\', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeChar(c) {
  return SHORT_ESCAPES[c] ?? '\\u00' + c.charCodeAt(0).toString(16).padStart(2, '0');
}

/** A JSON string literal, escaped like serde_json. */
export function quote(s) {
  // eslint-disable-next-line no-control-regex
  return '"' + s.replace(/["\\\u0000-\u001f]/g, escapeChar) + '"';
}

/**
 * A finite float as serde_json writes it: 1.0, 0.00001, 1.5e-7, 1e+16,
 * 1.2345e+21, -0.0. serde_json 1.0.154 (plugins/Cargo.lock) formats floats
 * with the zmij crate: decimal notation for exponents -5..=15, scientific
 * otherwise, with an explicit exponent sign (older, ryu-based releases
 * wrote 1e16).
 */
export function formatFloat(f) {
  if (f === 0) return Object.is(f, -0) ? '-0.0' : '0.0';
  const sign = f < 0 ? '-' : '';
  // toExponential() gives the shortest round-tripping digits, like zmij.
  const [mantissa, exp] = Math.abs(f).toExponential().split('e');
  const digits = mantissa.replace('.', '');
  const length = digits.length;
  const e = Number(exp); // 10^e <= |f| < 10^(e+1)
  if (e < -5 || e > 15) {
    return sign + digits[0] + (length > 1 ? '.' + digits.slice(1) : '') + 'e' + exp;
  }
  if (length <= e + 1) return sign + digits + '0'.repeat(e + 1 - length) + '.0';
  if (e >= 0) return sign + digits.slice(0, e + 1) + '.' + digits.slice(e + 1);
  return sign + '0.' + '0'.repeat(-e - 1) + digits;
}

const I64_MIN = -0x8000000000000000n;

function write(value, out) {
  switch (typeof value) {
    case 'string':
      out.push(quote(value));
      return;
    case 'boolean':
      out.push(value ? 'true' : 'false');
      return;
    case 'bigint':
      if (value < I64_MIN || value > U64_MAX) {
        throw new RangeError(`integer ${value} is outside i64/u64; use a number (float) or a string`);
      }
      out.push(value.toString());
      return;
    case 'number':
      // serde_json has no NaN or infinite numbers: json!(f64::NAN) is null.
      out.push(Number.isFinite(value) ? formatFloat(value) : 'null');
      return;
    case 'object':
      if (value === null) {
        out.push('null');
      } else if (Array.isArray(value)) {
        out.push('[');
        value.forEach((item, index) => {
          if (index > 0) out.push(',');
          write(item, out);
        });
        out.push(']');
      } else {
        const entries = value instanceof Map ? [...value] : Object.entries(value);
        entries.sort((a, b) => compareCodePoints(a[0], b[0]));
        out.push('{');
        entries.forEach(([name, item], index) => {
          if (typeof name !== 'string') throw new TypeError('object keys must be strings');
          if (index > 0) out.push(',');
          out.push(quote(name), ':');
          write(item, out);
        });
        out.push('}');
      }
      return;
    default:
      throw new TypeError(`cannot write ${typeof value} as JSON`);
  }
}

/**
 * Compact JSON text with the same bytes (once UTF-8 encoded) as Rust
 * `serde_json::to_string` of the equivalent `serde_json::Value`: members
 * sorted by key in code point order, non-ASCII written raw, serde_json's
 * escapes, bigints as integers, numbers as floats (see the table at the top).
 */
export function stringify(value) {
  const flat = flatText(value);
  if (flat !== undefined) return flat;
  const out = [];
  write(value, out);
  return out.join('');
}

const SURROGATE = /[\ud800-\udfff]/;
const SAFE_INTEGER = 2n ** 53n;

/**
 * `stringify` of the usual row, by the engine's own `JSON.stringify` (which
 * escapes strings exactly as serde_json does, and writes the members in the
 * order of a names array): a plain object whose members are strings
 * without surrogates, booleans, null and bigints within ±2^53 (written as
 * the integers they are), under names without surrogates (so the engine's
 * sort is code point order). undefined for anything else, which `write`
 * handles.
 */
function flatText(value) {
  if (typeof value !== 'object' || value === null || value.toJSON !== undefined) return undefined;
  const prototype = Object.getPrototypeOf(value);
  if (prototype !== null && prototype !== Object.prototype) return undefined;
  const names = Object.keys(value);
  let numbers;
  for (let i = 0; i < names.length; i++) {
    const item = value[names[i]];
    switch (typeof item) {
      case 'string':
        if (SURROGATE.test(item)) return undefined;
        break;
      case 'boolean':
        break;
      case 'bigint':
        if (item > SAFE_INTEGER || item < -SAFE_INTEGER) return undefined;
        numbers = true;
        break;
      case 'object':
        if (item !== null) return undefined;
        break;
      default:
        return undefined;
    }
  }
  if (SURROGATE.test(names.join(''))) return undefined;
  names.sort();
  if (numbers === undefined) return JSON.stringify(value, names);
  const plain = Object.create(null);
  for (let i = 0; i < names.length; i++) {
    const item = value[names[i]];
    plain[names[i]] = typeof item === 'bigint' ? Number(item) : item;
  }
  return JSON.stringify(plain, names);
}

// ---------------------------------------------------------------------------
// Effects and actions

/** UTF-8 bytes of a string. */
export function utf8(s) {
  return new TextEncoder().encode(s);
}

/**
 * Whether `value` is a Uint8Array, also one made in another realm: inside
 * the component, the Uint8Arrays the host hands over (BYTES values, `seal`'s
 * envelope) are not `instanceof Uint8Array`.
 */
export function isBytes(value) {
  return value instanceof Uint8Array || Object.prototype.toString.call(value) === '[object Uint8Array]';
}

function bytesOf(value, what = 'a value to set') {
  if (typeof value === 'string') return utf8(value);
  if (isBytes(value)) return value;
  throw new TypeError(`${what} must be a string or a Uint8Array`);
}

function ttlOf(ttlMs) {
  if (typeof ttlMs === 'bigint') return ttlMs;
  // Whole milliseconds, rounded down, like the Rust SDK's Duration helpers.
  if (typeof ttlMs === 'number' && ttlMs >= 0) return BigInt(Math.floor(ttlMs));
  throw new TypeError('ttlMs must be a non-negative number or bigint');
}

/** Effects (what to do to Redis), for `onChange`. Like Rust `Effect`. */
export const Effect = {
  /** Sets `key` to `value` (string, written as UTF-8, or Uint8Array); `ttlMs` optional. */
  set(key, value, ttlMs) {
    return {
      tag: 'set',
      val: { key, value: bytesOf(value), ttlMs: ttlMs === undefined || ttlMs === null ? undefined : ttlOf(ttlMs) },
    };
  },
  /** Deletes `key`. */
  delete(key) {
    return { tag: 'delete', val: key };
  },
  /** Makes `key` expire after `ttlMs` milliseconds. */
  expire(key, ttlMs) {
    return { tag: 'expire', val: { key, ttlMs: ttlOf(ttlMs) } };
  },
};

/** An action: `effect` answering change number `change` of the batch. */
export function action(change, effect) {
  return { change, effect };
}

/** Action: set `key` to `value` for change number `change`. */
export function set(change, key, value, ttlMs) {
  return action(change, Effect.set(key, value, ttlMs));
}

/** Action: delete `key` for change number `change`. */
export function del(change, key) {
  return action(change, Effect.delete(key));
}

/** Action: expire `key` after `ttlMs` for change number `change`. */
export function expire(change, key, ttlMs) {
  return action(change, Effect.expire(key, ttlMs));
}

// ---------------------------------------------------------------------------
// Cache events

/**
 * The cache effect asking the host to re-read the row of `table` whose
 * primary key is `keys`, `[name, value]` pairs for every key column in key
 * order (an array of pairs, a Map, any iterable of pairs). The host hands the
 * row back to `onChanges` as a `snapshot` change versioned at the read
 * timestamp, or as a `delete` when the row does not exist. Like Rust
 * `CacheEffect::refresh`.
 *
 * refresh('Users', [['UserId', {tag: 'int64', val: 42n}]])
 */
export function refresh(table, keys) {
  if (typeof table !== 'string') throw new TypeError('a refresh table must be a string');
  const columns = [];
  for (const [name, value] of keys) {
    if (typeof name !== 'string') throw new TypeError('a refresh key column name must be a string');
    columns.push({ name, value });
  }
  return { tag: 'refresh', val: { table, keys: columns } };
}

/** Cache effects (what to ask the host about a cache event), for `onCacheEvent`. Like Rust `CacheEffect`. */
export const CacheEffect = {
  /** Re-reads a row; see `refresh`. */
  refresh,
};

/** A cache action: `effect` answering event number `event` of the batch. */
export function cacheAction(event, effect) {
  return { event, effect };
}

/** The value of the cache event's stream entry field `name`, or undefined. Like Rust `CacheEvent::field`. */
export function field(event, name) {
  const entry = event.fields.find(([fieldName]) => fieldName === name);
  return entry === undefined ? undefined : entry[1];
}

/**
 * Calls `onCacheEvent(event, index)` for each event of the batch and tags
 * the cache effects it returns (an array, one effect, or nothing) with the
 * event's index. An error names the event: `event 3 (key users:42): ...`.
 * Like the Rust SDK's default `on_cache_events`.
 */
export function eachCacheEvent(events, onCacheEvent) {
  const actions = [];
  events.forEach((event, index) => {
    let effects;
    try {
      effects = onCacheEvent(event, index);
    } catch (error) {
      throw `event ${index} (key ${event.key}): ${errorText(error)}`;
    }
    for (const effect of effectList(effects)) actions.push(cacheAction(index, effect));
  });
  return actions;
}

// ---------------------------------------------------------------------------
// Crypto

let hostCrypto;

/**
 * Gives this module the host's `crypto` interface, which `seal` and
 * `keyedHash` call. The plugin imports it and passes it in once, at the top
 * of its module:
 *
 *   import * as crypto from 'redis-spanner:plugin/crypto@0.4.0';
 *   useCrypto(crypto);
 *
 * Without it (say under plain Node), both throw "no keyring outside the
 * host". `useCrypto(undefined)` forgets it.
 */
export function useCrypto(crypto) {
  if (crypto !== undefined && (typeof crypto?.seal !== 'function' || typeof crypto?.keyedHash !== 'function')) {
    throw new TypeError('useCrypto needs the crypto interface: an object with seal and keyedHash');
  }
  hostCrypto = crypto;
}

/**
 * Encrypts `plaintext` with the current version of key `keyName` and returns
 * the envelope (a Uint8Array) naming the key and its version. `aad` is
 * authenticated but not stored: a reader must pass the same (the Redis key is
 * a good choice). Strings are taken as UTF-8. Throws the host's refusal as a
 * string: a key not granted to the plugin, no keyring, an unknown key name.
 * Like Rust `seal`.
 */
export function seal(keyName, plaintext, aad) {
  const plain = bytesOf(plaintext, 'plaintext');
  const authenticated = bytesOf(aad, 'aad');
  return callKeyring('seal', keyName, (crypto) => crypto.seal(keyName, plain, authenticated));
}

/**
 * HMAC-SHA256 of `data` (a Uint8Array, or a string taken as UTF-8) under the
 * current version of key `keyName`, as lower-case hex: a stable, opaque name
 * for data that must not appear in a Redis key (an e-mail address, say).
 * Throws like `seal`. Like Rust `keyed_hash`.
 */
export function keyedHash(keyName, data) {
  const bytes = bytesOf(data, 'data');
  return callKeyring('keyed-hash', keyName, (crypto) => crypto.keyedHash(keyName, bytes));
}

function callKeyring(operation, keyName, call) {
  if (hostCrypto === undefined) throw `${operation} with key ${JSON.stringify(keyName)}: no keyring outside the host`;
  try {
    return call(hostCrypto);
  } catch (error) {
    throw errorText(error);
  }
}

// ---------------------------------------------------------------------------
// Plugins

/**
 * The text of a thrown value, for a WIT `result` error: a string as it is,
 * the `payload` string of an error an import threw, an Error's message.
 */
export function errorText(error) {
  if (typeof error === 'string') return error;
  if (typeof error?.payload === 'string') return error.payload;
  if (error instanceof Error) return error.message;
  return String(error);
}

/** What an `onChange` or `onCacheEvent` returned, as an array of effects. */
function effectList(effects) {
  if (effects === undefined || effects === null) return [];
  return Array.isArray(effects) ? effects : [effects];
}

/**
 * Calls `onChange(change, index)` for each decoded change (see
 * `decodeBatch`) and tags the effects it returns (an array, one effect, or
 * nothing) with the change's index. An error names the change: `change 3
 * (table Users): ...`. Like the Rust SDK's default `on_changes`.
 */
export function eachChange(changes, onChange) {
  if (!Array.isArray(changes)) throw new TypeError(`changes must be an array, not ${typeof changes}`);
  const actions = [];
  for (let index = 0; index < changes.length; index++) {
    if (!(index in changes)) continue; // a hole, as forEach skips it
    const change = changes[index];
    let effects;
    try {
      effects = onChange(change, index);
    } catch (error) {
      throw `change ${index} (table ${change.table}): ${errorText(error)}`;
    }
    if (effects === undefined || effects === null) continue;
    if (!Array.isArray(effects)) {
      actions.push({ change: index, effect: effects });
      continue;
    }
    for (let i = 0; i < effects.length; i++) actions.push({ change: index, effect: effects[i] });
  }
  return actions;
}

/**
 * Builds the component's exports from a plugin definition, like Rust
 * `register_plugin!`:
 *
 *   const plugin = definePlugin({
 *     init() { return state; },                       // optional; throw to fail
 *     onChange(change, state, index) { ... },         // returns effects
 *     onChanges(changes, state) { ... },              // or: returns actions
 *     onCacheEvent(event, state, index) { ... },      // returns cache effects
 *     onCacheEvents(events, state) { ... },           // or: returns cache actions
 *   });
 *   export const init = plugin.init;
 *   export const onChanges = plugin.onChanges;
 *   export const onCacheEvents = plugin.onCacheEvents;
 *
 * `init` runs the definition's `init` and keeps what it returns as the state
 * passed to every later call. `onChanges` decodes the batch (`decodeBatch`)
 * and hands the changes to the definition's `onChanges`, or else through
 * `eachChange` to its `onChange` (no `onChange` ignores every change).
 * `onCacheEvents` hands the events to the definition's `onCacheEvents`, or
 * else through `eachCacheEvent` to its `onCacheEvent` (no `onCacheEvent`
 * ignores every event). Any thrown value becomes the WIT error string.
 */
export function definePlugin(definition) {
  let ready = false;
  let state;
  return {
    init() {
      try {
        state = definition.init ? definition.init() : undefined;
      } catch (error) {
        throw errorText(error);
      }
      ready = true;
    },
    onChanges(batch) {
      if (!ready) throw 'on-changes was called before init succeeded';
      try {
        if (definition.onChanges) return definition.onChanges(decodeBatch(batch), state);
        if (!definition.onChange) return [];
        return eachChange(decodeBatch(batch), (change, index) => definition.onChange(change, state, index));
      } catch (error) {
        throw errorText(error);
      }
    },
    onCacheEvents(events) {
      if (!ready) throw 'on-cache-events was called before init succeeded';
      try {
        if (definition.onCacheEvents) return definition.onCacheEvents(events, state);
        if (!definition.onCacheEvent) return [];
        return eachCacheEvent(events, (event, index) => definition.onCacheEvent(event, state, index));
      } catch (error) {
        throw errorText(error);
      }
    },
  };
}

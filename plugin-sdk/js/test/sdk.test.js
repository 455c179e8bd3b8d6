// Tests of the JavaScript SDK: node --test plugin-sdk/js/test/
//
// serde_json-vectors.json holds what Rust serde_json 1.0.154 (the version in
// plugins/Cargo.lock) writes for a set of floats and JSON texts; the SDK must
// give the same bytes.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import {
  API_VERSION,
  Effect,
  asBool,
  asBytes,
  asDate,
  asF64,
  asI64,
  asJsonText,
  asNumeric,
  asString,
  asTimestamp,
  base64,
  compareCodePoints,
  definePlugin,
  del,
  eachChange,
  errorText,
  expire,
  isBytes,
  key,
  keyWithTag,
  keyValue,
  newValue,
  oldValue,
  parseJson,
  rowJson,
  set,
  stringify,
  toJson,
  toText,
} from '../redis-spanner-sdk.js';

const vectors = JSON.parse(readFileSync(new URL('./serde_json-vectors.json', import.meta.url), 'utf8'));

function floatFromBits(hex) {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, BigInt(`0x${hex}`));
  return view.getFloat64(0);
}

function serde(text) {
  try {
    return stringify(parseJson(text));
  } catch (error) {
    if (!(error instanceof SyntaxError)) throw error;
    return 'ERR';
  }
}

const column = (name, value) => ({ name, value });

function usersUpdate() {
  return {
    table: 'Users',
    kind: 'update',
    keys: [column('UserId', { tag: 'int64', val: 42n })],
    newValues: [
      column('Name', { tag: 'string', val: 'Ada' }),
      column('Avatar', { tag: 'bytes', val: new Uint8Array([0xff]) }),
      column('Email', { tag: 'null' }),
    ],
    oldValues: [column('Name', { tag: 'string', val: 'Ad' })],
    commitMicros: 1700000000000000n,
    transactionId: 'tx',
    recordSequence: 0,
    transactionTag: '',
  };
}

test('keyWithTag puts the tag part alone in braces', () => {
  assert.equal(keyWithTag(['orders', '42', 7], 1), 'orders:{42}:7');
  assert.equal(keyWithTag(['{x}', 'y'], 0), '{\\(x\\)}:y');
  assert.equal(keyWithTag(['a', 'b'], 2), 'a:b');
  assert.equal(keyWithTag(['a', ''], 1), 'a:');
  assert.equal(keyWithTag(['a', 'b'], 1n), 'a:{b}');
  assert.throws(() => keyWithTag(['a'], false), TypeError);
  assert.throws(() => key(['a', 1.5]), TypeError);
  assert.throws(() => key([null]), TypeError);
});

test('key joins with colons', () => {
  assert.equal(key(['users', '42']), 'users:42');
  assert.equal(key(['a', 'b', 'c']), 'a:b:c');
  assert.equal(key(['solo']), 'solo');
  assert.equal(key([]), '');
});

test('key escapes colon and backslash', () => {
  assert.equal(key(['a:b']), 'a\\:b');
  assert.equal(key(['a\\b']), 'a\\\\b');
  assert.equal(key(['t', 'x\\:y']), 't:x\\\\\\:y');
  assert.equal(key(['files', 'C:\\tmp']), 'files:C\\:\\\\tmp');
});

test('key escapes braces, so no row value picks a cluster slot', () => {
  assert.equal(key(['u', '{x}']), 'u:\\(x\\)');
  assert.equal(key(['u', '}{']), 'u:\\)\\(');
  assert.ok(!/[{}]/.test(key(['{a}', 'b}', '{c'])));
});

test('different key parts give different keys', () => {
  const cases = [['a', 'b'], ['a:b'], ['a\\', 'b'], ['a\\:b'], ['a\\', ':b'], ['a', '', 'b'], ['a:', 'b'], ['a', ':b'], ['{a}'], ['(a)'], ['\\(a\\)'], [''], ['', '']];
  assert.equal(new Set(cases.map(key)).size, cases.length);
});

test('scalars convert to JSON like Value::to_json', () => {
  assert.equal(stringify(toJson({ tag: 'null' })), 'null');
  assert.equal(stringify(toJson({ tag: 'bool', val: true })), 'true');
  assert.equal(stringify(toJson({ tag: 'int64', val: 9223372036854775807n })), '9223372036854775807');
  assert.equal(stringify(toJson({ tag: 'int64', val: -9223372036854775808n })), '-9223372036854775808');
  assert.equal(stringify(toJson({ tag: 'int64', val: 9007199254740993n })), '9007199254740993');
  assert.equal(stringify(toJson({ tag: 'int64', val: -42n })), '-42');
  assert.equal(stringify(toJson({ tag: 'float64', val: 1.5 })), '1.5');
  assert.equal(stringify(toJson({ tag: 'float64', val: 1 })), '1.0');
  assert.equal(stringify(toJson({ tag: 'float64', val: -0 })), '-0.0');
  assert.equal(stringify(toJson({ tag: 'string', val: 'héllo "x"' })), '"héllo \\"x\\""');
});

test('non-finite floats become strings', () => {
  assert.equal(toJson({ tag: 'float64', val: NaN }), 'NaN');
  assert.equal(toJson({ tag: 'float64', val: Infinity }), 'Infinity');
  assert.equal(toJson({ tag: 'float64', val: -Infinity }), '-Infinity');
});

test('bytes become padded base64', () => {
  const b64 = (bytes) => toJson({ tag: 'bytes', val: new Uint8Array(bytes) });
  assert.equal(b64([...Buffer.from('foobar')]), 'Zm9vYmFy');
  assert.equal(b64([]), '');
  assert.equal(b64([0xff]), '/w==');
  assert.equal(b64([0xfb, 0xff]), '+/8=');
  for (let n = 0; n < 40; n++) {
    const bytes = Uint8Array.from({ length: n }, (_, i) => (i * 97 + n * 31) & 255);
    assert.equal(base64(bytes), Buffer.from(bytes).toString('base64'));
  }
});

test('textual types stay strings', () => {
  const ts = '2024-05-01T12:00:00.123456Z';
  assert.equal(toJson({ tag: 'timestamp', val: ts }), ts);
  assert.equal(toJson({ tag: 'date', val: '2024-05-01' }), '2024-05-01');
  assert.equal(toJson({ tag: 'numeric', val: '12345678901234567890.123456789' }), '12345678901234567890.123456789');
});

test('JSON is embedded, sorted, with exact integers', () => {
  assert.equal(stringify(toJson({ tag: 'json', val: '{"a":[1,2,{"b":null}]}' })), '{"a":[1,2,{"b":null}]}');
  assert.equal(stringify(toJson({ tag: 'json', val: '[1,2]' })), '[1,2]');
  assert.equal(
    stringify(toJson({ tag: 'json', val: '{"z":12345678901234567890,"a":{"y":1.0,"x":-0}}' })),
    '{"a":{"x":-0.0,"y":1.0},"z":12345678901234567890}',
  );
});

test('unparsable JSON is kept as text', () => {
  assert.equal(toJson({ tag: 'json', val: '{oops' }), '{oops');
  assert.equal(toJson({ tag: 'json', val: '[1e400]' }), '[1e400]');
  assert.equal(toJson({ tag: 'json', val: '"\\ud800"' }), '"\\ud800"');
});

test('floats print like serde_json', () => {
  for (const [hex, expected] of vectors.floats) {
    assert.equal(stringify(floatFromBits(hex)), expected, `f64 bits ${hex}`);
  }
  assert.equal(stringify(NaN), 'null');
  assert.equal(stringify(Infinity), 'null');
});

test('JSON text parses and prints like serde_json', () => {
  for (const [text, expected] of vectors.texts) {
    assert.equal(serde(text), expected, `text ${JSON.stringify(text)}`);
  }
});

test('strings are escaped like serde_json', () => {
  // Each vector is a string; serde_json parsed its JSON.stringify form.
  for (const [string, expected] of vectors.strings) {
    assert.equal(serde(JSON.stringify(string)), expected, `string ${JSON.stringify(string)}`);
    assert.equal(stringify(string), expected);
  }
});

test('object members sort by code point, not UTF-16 unit', () => {
  const keys = ['\u{1F600}', '\uff5a', 'z', '\ue000', '', 'Z', 'é', 'a\u{10000}', 'a\uffff'];
  const sorted = [...keys].sort(compareCodePoints);
  const byUtf8 = [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  assert.deepEqual(sorted, byUtf8);
  assert.equal(stringify({ '\u{1F600}': 1n, '\uff5a': 2n }), '{"\uff5a":2,"\u{1F600}":1}');
});

test('a string with a lone surrogate is written raw, as before the engine wrote strings', () => {
  assert.equal(stringify('a\ud800b'), '"a\ud800b"');
  assert.equal(stringify('\udc00"'), '"\udc00\\""');
  assert.equal(stringify({ '\ud800': '\u{1F600}' }), '{"\ud800":"\u{1F600}"}');
});

test('every character below U+0080 is escaped as serde_json does, alone and as a member name', () => {
  const every = Array.from({ length: 0x80 }, (_, c) => String.fromCharCode(c)).join('');
  const expected =
    '"' +
    [...every]
      .map((c) => {
        const short = { '"': '\\"', '\\': '\\\\', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t' }[c];
        if (short !== undefined) return short;
        return c < ' ' ? '\\u00' + c.charCodeAt(0).toString(16).padStart(2, '0') : c;
      })
      .join('') +
    '"';
  assert.equal(stringify(every), expected);
  assert.equal(stringify({ [every]: null, a: true }), '{' + expected + ':null,"a":true}');
});

test('stringify: bigint is an integer, number is a float', () => {
  assert.equal(stringify({ count: 1n, ratio: 1, list: [2n, 2.5, null, true, 'x'] }), '{"count":1,"list":[2,2.5,null,true,"x"],"ratio":1.0}');
  assert.equal(stringify(18446744073709551615n), '18446744073709551615');
  assert.throws(() => stringify(18446744073709551616n), RangeError);
  assert.throws(() => stringify(-9223372036854775809n), RangeError);
  assert.equal(stringify(new Map([['b', 1n], ['a', 2n]])), '{"a":2,"b":1}');
  assert.throws(() => stringify(undefined), TypeError);
});

test('parseJson: duplicates, __proto__, depth', () => {
  const object = parseJson('{"__proto__":{"x":1},"a":1,"a":2}');
  assert.equal(Object.getPrototypeOf(object), null);
  assert.equal(stringify(object), '{"__proto__":{"x":1},"a":2}');
  assert.equal(typeof parseJson('9007199254740993'), 'bigint');
  assert.equal(parseJson('9007199254740993'), 9007199254740993n);
  assert.equal(typeof parseJson('1.0'), 'number');
  assert.throws(() => parseJson('['.repeat(128) + ']'.repeat(128)), SyntaxError);
  assert.equal(serde('['.repeat(127) + ']'.repeat(127)), '['.repeat(127) + ']'.repeat(127));
});

test('column lookup', () => {
  const change = usersUpdate();
  assert.equal(asI64(keyValue(change, 'UserId')), 42n);
  assert.equal(keyValue(change, 'Name'), undefined);
  assert.equal(newValue(change, 'Name').val, 'Ada');
  assert.equal(newValue(change, 'UserId'), undefined);
  assert.equal(oldValue(change, 'Name').val, 'Ad');
  assert.equal(asI64({ tag: 'string', val: '7' }), undefined);
  assert.equal(asI64(undefined), undefined);
});

test('typed accessors match only their type', () => {
  const ts = { tag: 'timestamp', val: '2024-01-01T00:00:00Z' };
  assert.equal(asTimestamp(ts), '2024-01-01T00:00:00Z');
  assert.equal(asString(ts), undefined);
  assert.equal(asDate({ tag: 'date', val: '2024-01-01' }), '2024-01-01');
  assert.equal(asNumeric({ tag: 'numeric', val: '1.5' }), '1.5');
  assert.equal(asJsonText({ tag: 'json', val: '[1]' }), '[1]');
  assert.equal(asBool({ tag: 'bool', val: false }), false);
  assert.equal(asF64({ tag: 'float64', val: 0.5 }), 0.5);
  assert.equal(asF64({ tag: 'int64', val: 7n }), undefined);
  assert.deepEqual(asBytes({ tag: 'bytes', val: new Uint8Array([1, 2]) }), new Uint8Array([1, 2]));
  assert.equal(asDate({ tag: 'null' }), undefined);
  assert.equal(asDate(undefined), undefined);
});

test('any value becomes text for keys', () => {
  assert.equal(toText({ tag: 'int64', val: -3n }), '-3');
  assert.equal(toText({ tag: 'bool', val: true }), 'true');
  assert.equal(toText({ tag: 'float64', val: 0.5 }), '0.5');
  assert.equal(toText({ tag: 'float64', val: 1 }), '1.0');
  assert.equal(toText({ tag: 'float64', val: NaN }), 'NaN');
  assert.equal(toText({ tag: 'string', val: 'a:b' }), 'a:b');
  assert.equal(toText({ tag: 'json', val: '{"b":1, "a":2}' }), '{"b":1, "a":2}');
  assert.equal(toText({ tag: 'bytes', val: new Uint8Array([0xff]) }), '/w==');
  assert.equal(toText({ tag: 'null' }), undefined);
});

test('rowJson with int64AsString writes INT64 as decimal strings', () => {
  const change = { keys: [column('Id', { tag: 'int64', val: 9007199254740993n })], newValues: [] };
  assert.equal(stringify(rowJson(change, { int64AsString: true })), '{"Id":"9007199254740993"}');
  assert.equal(stringify(rowJson(change)), '{"Id":9007199254740993}');
});

test('rowJson has keys and new values sorted by name', () => {
  assert.equal(stringify(rowJson(usersUpdate())), '{"Avatar":"/w==","Email":null,"Name":"Ada","UserId":42}');
  const change = usersUpdate();
  change.newValues.push(column('UserId', { tag: 'string', val: 'later wins' }));
  assert.equal(stringify(rowJson(change)), '{"Avatar":"/w==","Email":null,"Name":"Ada","UserId":"later wins"}');
  assert.equal(stringify(rowJson({ keys: [], newValues: [] })), '{}');
});

test('effects and actions are WIT records', () => {
  const utf8 = (s) => new TextEncoder().encode(s);
  assert.deepEqual(Effect.set('k', 'v'), { tag: 'set', val: { key: 'k', value: utf8('v'), ttlMs: undefined } });
  assert.deepEqual(Effect.set('k', new Uint8Array([1, 2]), 1500.9), { tag: 'set', val: { key: 'k', value: new Uint8Array([1, 2]), ttlMs: 1500n } });
  assert.deepEqual(Effect.delete('k'), { tag: 'delete', val: 'k' });
  assert.deepEqual(Effect.expire('k', 2000), { tag: 'expire', val: { key: 'k', ttlMs: 2000n } });
  assert.deepEqual(set(3, 'k', 'é', 5n), { change: 3, effect: { tag: 'set', val: { key: 'k', value: utf8('é'), ttlMs: 5n } } });
  assert.deepEqual(del(1, 'k'), { change: 1, effect: { tag: 'delete', val: 'k' } });
  assert.deepEqual(expire(2, 'k', 18446744073709551615n), { change: 2, effect: { tag: 'expire', val: { key: 'k', ttlMs: 18446744073709551615n } } });
  assert.throws(() => Effect.expire('k', -1), TypeError);
  assert.throws(() => Effect.set('k', 42), TypeError);
});


test('the SDK implements contract 0.4.0', () => {
  assert.equal(API_VERSION, '0.4.0');
});

test('isBytes accepts Uint8Arrays of any realm, and set takes them', async () => {
  const { runInNewContext } = await import('node:vm');
  const foreign = runInNewContext('new Uint8Array([1, 2])');
  assert.equal(foreign instanceof Uint8Array, false);
  assert.equal(isBytes(foreign), true);
  assert.equal(isBytes(new Uint8Array(0)), true);
  assert.equal(isBytes([1, 2]), false);
  assert.equal(isBytes(new Uint16Array(1)), false);
  assert.equal(Effect.set('k', foreign).val.value, foreign);
});

test('errorText reads strings, import error payloads and Error messages', () => {
  assert.equal(errorText('why'), 'why');
  const fromImport = Object.assign(new Error('key x is not granted'), { payload: 'key x is not granted' });
  assert.equal(errorText(fromImport), 'key x is not granted');
  assert.equal(errorText({ payload: 'p' }), 'p');
  assert.equal(errorText(new TypeError('bad')), 'bad');
  assert.equal(errorText(42), '42');
  assert.equal(errorText(undefined), 'undefined');
});

// A batch text (docs/BATCH-TEXT.md): one delete per [table name,
// transaction id] pair, each table and transaction described once.
function wireBatch(pairs, breakIt = () => {}) {
  const tables = [...new Set(pairs.map(([table]) => table))];
  const ids = [...new Set(pairs.map(([, id]) => id))];
  const parts = [
    tables.map((name) => [name, [], []]),
    ids.map((id) => [id, '', '0']),
    pairs.map(([table, id], i) => [tables.indexOf(table), 2, [], [], [], ids.indexOf(id), i]),
  ];
  breakIt(parts);
  return new TextEncoder().encode(JSON.stringify(parts));
}

function change(table, id) {
  return { table, kind: 'delete', keys: [], newValues: [], oldValues: [], commitMicros: 0n, transactionId: id, recordSequence: 0, transactionTag: '' };
}

const deleter = {
  init() {
    return { prefix: 'p' };
  },
  onChange(c, state) {
    if (c.table === 'T') return [Effect.delete(`${state.prefix}${c.transactionId}`)];
    if (c.table === 'Bad') throw new Error('no good');
    return [];
  },
};

test('default onChanges decodes the batch and tags effects with the change index', () => {
  const plugin = definePlugin(deleter);
  plugin.init();
  assert.deepEqual(plugin.onChanges(wireBatch([['T', 'a'], ['Other', 'b'], ['T', 'c']])), [
    { change: 0, effect: { tag: 'delete', val: 'pa' } },
    { change: 2, effect: { tag: 'delete', val: 'pc' } },
  ]);
  assert.deepEqual(eachChange([change('T', 'a'), change('T', 'b')], (c) => (c.transactionId === 'a' ? undefined : Effect.delete('x'))), [
    { change: 1, effect: { tag: 'delete', val: 'x' } },
  ]);
});

test('onChange gets the state and the change index; one effect needs no array', () => {
  const seen = [];
  const plugin = definePlugin({
    init: () => 'state',
    onChange(c, state, index) {
      seen.push([c.table, c.transactionId, c.recordSequence, state, index]);
      return Effect.delete(c.transactionId);
    },
  });
  plugin.init();
  assert.deepEqual(plugin.onChanges(wireBatch([['T', 'a'], ['U', 'b']])), [
    { change: 0, effect: { tag: 'delete', val: 'a' } },
    { change: 1, effect: { tag: 'delete', val: 'b' } },
  ]);
  assert.deepEqual(seen, [
    ['T', 'a', 0, 'state', 0],
    ['U', 'b', 1, 'state', 1],
  ]);
});

test('a definition onChanges gets the decoded changes and the state', () => {
  const plugin = definePlugin({
    init: () => 'k',
    onChanges(changes, state) {
      return [del(changes.length - 1, `${state}:${changes.map((c) => c.table + c.transactionId).join(',')}`)];
    },
  });
  plugin.init();
  assert.deepEqual(plugin.onChanges(wireBatch([['T', 'a'], ['U', 'a']])), [{ change: 1, effect: { tag: 'delete', val: 'k:Ta,Ua' } }]);
});

test('errors become strings naming the change', () => {
  const plugin = definePlugin(deleter);
  assert.throws(() => plugin.onChanges(wireBatch([['T', 'a']])), (e) => e === 'on-changes was called before init succeeded');
  plugin.init();
  assert.throws(() => plugin.onChanges(wireBatch([['T', 'a'], ['Bad', 'b']])), (e) => e === 'change 1 (table Bad): no good');
  const broken = wireBatch([['T', 'a']], (parts) => (parts[2][0][5] = 3));
  assert.throws(
    () => plugin.onChanges(broken),
    (e) => e === "change 0 (table T): transaction index 3 is outside the batch's 1 transactions",
  );
  const failing = definePlugin({
    init() {
      throw new Error('set prefix in the manifest');
    },
  });
  assert.throws(() => failing.init(), (e) => e === 'set prefix in the manifest');
  assert.throws(() => failing.onChanges(wireBatch([])), (e) => e === 'on-changes was called before init succeeded');
});

test('a plugin without onChange ignores every change', () => {
  const plugin = definePlugin({});
  plugin.init();
  assert.deepEqual(plugin.onChanges(wireBatch([['T', 'a']])), []);
});

test('flat rows take the engine writer and write what the own writer does', () => {
  // `stringify([row])` writes `row` with the SDK's own writer (arrays never
  // take the engine's path), so the two must agree byte for byte.
  const samples = [
    {},
    { b: 'x', a: 1n, c: true, d: null },
    { 10: 'ten', 9: 'nine', __proto__x: 'p', Z: 'z', a: '' },
    { s: 'quote " backslash \\ controls \u0000\u0001\b\t\n\f\r\u001f del \u007f é 😀 \u2028' },
    { big: 2n ** 53n, small: -(2n ** 53n), zero: 0n },
    { beyond: 2n ** 53n + 1n },
    { float: 1.5, whole: 2 },
    { lone: 'a\ud800b' },
    { '\ud83d\ude00': 1n, '\uffff': 2n },
    { nested: { a: 1n } },
  ];
  const proto = Object.create(null);
  proto.__proto__ = 'own';
  proto.k = 'v';
  samples.push(proto);
  for (const row of samples) {
    assert.equal(`[${stringify(row)}]`, stringify([row]), JSON.stringify(Object.keys(row)));
  }
  class WithToJson {
    constructor() {
      this.a = 'x';
    }
    toJSON() {
      return 'not this';
    }
  }
  assert.equal(stringify(new WithToJson()), '{"a":"x"}');
  assert.equal(stringify({ 10: 'a', 9: 'b' }), '{"10":"a","9":"b"}');
});

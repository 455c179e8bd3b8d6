// splitKey and valueFromText: the inverses of key and toText, as the Rust
// and Python SDKs have them.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { key, keyWithTag, splitKey, toText, valueFromText } from '../redis-spanner-sdk.js';

test('splitKey undoes key', () => {
  const cases = [['users', '42'], ['a:b', 'c\\d', '{e}', '}{', ''], ['\\(x\\)', ':', '\\'], ['', ''], ['ü', '日本:語']];
  for (const parts of cases) assert.deepEqual(splitKey(key(parts)), parts);
  assert.deepEqual(splitKey('orders:eu\\:\\(1\\):7'), ['orders', 'eu:{1}', '7']);
  assert.deepEqual(splitKey(''), ['']);
});

test('splitKey refuses what key never makes', () => {
  for (const bad of ['a\\', 'a:\\x', '\\{', 'a:{b}', 'a}', 'a\\ b', '\\', 'a\\constructor']) {
    assert.equal(splitKey(bad), undefined, bad);
  }
  assert.equal(splitKey(keyWithTag(['o', '42'], 1)), undefined);
});

const v = (tag, val) => ({ tag, val });

test('key values come back from their text', () => {
  const values = [
    ['INT64', v('int64', 0n)],
    ['INT64', v('int64', -42n)],
    ['INT64', v('int64', 2n ** 63n - 1n)],
    ['INT64', v('int64', -(2n ** 63n))],
    ['STRING', v('string', 'eu:{1} ü')],
    ['STRING', v('string', '')],
    ['BYTES', v('bytes', new Uint8Array([0, 1, 0xff]))],
    ['BYTES', v('bytes', new Uint8Array([0xfb]))],
    ['BYTES', v('bytes', new Uint8Array([0xfb, 0xff]))],
    ['BYTES', v('bytes', new Uint8Array([]))],
    ['DATE', v('date', '2024-02-29')],
    ['TIMESTAMP', v('timestamp', '2024-02-29T12:34:56.789Z')],
    ['NUMERIC', v('numeric', '-12.50')],
    ['BOOL', v('bool', true)],
    ['BOOL', v('bool', false)],
    ['FLOAT64', v('float64', 1.5)],
    ['FLOAT64', v('float64', 1)],
    ['FLOAT64', v('float64', -0)],
    ['FLOAT64', v('float64', 1e16)],
    ['FLOAT64', v('float64', 1.5e-7)],
    ['FLOAT64', v('float64', Number.MAX_VALUE)],
    ['FLOAT64', v('float64', 0.1 + 0.2)],
    ['FLOAT64', v('float64', Infinity)],
    ['FLOAT64', v('float64', -Infinity)],
    ['FLOAT64', v('float64', NaN)],
  ];
  for (const [type, value] of values) {
    const text = toText(value);
    // deepEqual tells -0 from 0 and NaN equals NaN (Object.is).
    assert.deepEqual(valueFromText(type, text), value, `${type} ${text}`);
  }
  assert.deepEqual(valueFromText('FLOAT64', '2E+3'), v('float64', 2000));
  assert.deepEqual(valueFromText('FLOAT64', '7'), v('float64', 7));
});

test('text that is no key value gives undefined', () => {
  const bad = [
    ['INT64', ''], ['INT64', '+1'], ['INT64', '01'], ['INT64', '-0'], ['INT64', ' 1'],
    ['INT64', '1.0'], ['INT64', '9223372036854775808'], ['INT64', '0x10'], ['INT64', '1_0'],
    ['INT64', '\u0663'], ['BOOL', 'TRUE'], ['BOOL', '1'], ['FLOAT64', ''], ['FLOAT64', 'nan'],
    ['FLOAT64', 'inf'], ['FLOAT64', '+1.5'], ['FLOAT64', '.5'], ['FLOAT64', '1.'],
    ['FLOAT64', '01.5'], ['FLOAT64', '1e'], ['FLOAT64', '1e400'], ['FLOAT64', ' 1.5'],
    ['FLOAT64', '1_0.5'], ['FLOAT64', 'constructor'], ['BYTES', 'AAH'], ['BYTES', 'AAH/='],
    ['BYTES', 'AB=='], ['BYTES', 'AA-_'], ['BYTES', 'AAH/\n'], ['BYTES', 'ü'], ['FLOAT32', '1.5'],
    ['JSON', '{}'], ['int64', '1'], ['toString', 'x'],
  ];
  for (const [type, text] of bad) assert.equal(valueFromText(type, text), undefined, `${type} ${text}`);
});

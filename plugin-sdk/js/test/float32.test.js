// FLOAT32 values: node --test plugin-sdk/js/test/
//
// A float32 renders as the shortest decimal that reads back as the same
// float32 (Rust's `f32` Display), printed as a float64 the way serde_json
// does.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { asF32, asF64, rowJson, shortestF32, stringify, toJson, toText } from '../redis-spanner-sdk.js';

const float32 = (val) => ({ tag: 'float32', val });
const render = (val) => stringify(toJson(float32(val)));

function f32FromBits(hex) {
  const view = new DataView(new ArrayBuffer(4));
  view.setUint32(0, parseInt(hex, 16));
  return view.getFloat32(0);
}

// [float32 bits, serde_json text of the f64 parsed from Rust's f32 Display].
// Among them: powers of two, whose interval below is half as wide as above
// (the nearest decimal may not read back when the farther one does), the
// smallest normal, whose interval Rust narrows the same way, and float32s
// with a candidate decimal that reads as a double exactly on the midpoint
// between two float32s: 7.038531e-26 lies just below the midpoint of
// 15ae43fd and 15ae43fe, so it belongs to 15ae43fd, yet its double is the
// midpoint itself, which `Math.fround` rounds to the even 15ae43fe.
const RUST_VECTORS = [
  ['3dcccccd', '0.1'],
  ['3eaaaaab', '0.33333334'],
  ['4b800000', '16777216.0'],
  ['7f7fffff', '3.4028235e+38'],
  ['00000001', '1e-45'],
  ['501502f9', '10000000000.0'],
  ['47f12065', '123456.79'],
  ['4a000001', '2097152.3'],
  ['007fffff', '1.1754942e-38'],
  ['00800000', '1.1754944e-38'],
  ['0f800000', '1.2621775e-29'],
  ['6b000000', '1.5474251e+26'],
  ['6c800000', '1.2379401e+27'],
  ['008394ec', '1.2083873e-38'],
  ['008394ed', '1.2083875e-38'],
  ['15ae43fd', '7.038531e-26'],
  ['15ae43fe', '7.0385313e-26'],
  ['3f800000', '1.0'],
  ['7f000000', '1.7014118e+38'],
  ['3f7fffff', '0.99999994'],
  ['4cbebc20', '100000000.0'],
  ['5f800000', '1.8446744e+19'],
];

test('float32 renders like the Rust SDK', () => {
  for (const [hex, expected] of RUST_VECTORS) {
    const x = f32FromBits(hex);
    assert.equal(render(x), expected, `f32 bits ${hex}`);
    assert.equal(render(-x), `-${expected}`, `f32 bits ${hex}, negated`);
  }
});

test('tricky float32 values', () => {
  assert.equal(render(Math.fround(0.1)), '0.1');
  assert.equal(render(Math.fround(1 / 3)), '0.33333334');
  assert.equal(render(16777216), '16777216.0');
  assert.equal(render(3.4028234663852886e38), '3.4028235e+38');
  assert.equal(render(1.401298464324817e-45), '1e-45');
  assert.equal(render(-0), '-0.0');
  assert.equal(render(0), '0.0');
  assert.equal(render(1e10), '10000000000.0');
  assert.equal(render(Math.fround(123456.79)), '123456.79');
  // A number that is no float32 is rounded to one first.
  assert.equal(render(0.1), '0.1');
  assert.equal(render(16777217), '16777216.0');
});

test('non-finite float32 values become strings, like float64', () => {
  assert.equal(toJson(float32(NaN)), 'NaN');
  assert.equal(toJson(float32(Infinity)), 'Infinity');
  assert.equal(toJson(float32(-Infinity)), '-Infinity');
  assert.equal(render(3.5e38), '"Infinity"', 'beyond float32 range');
  assert.equal(toText(float32(NaN)), 'NaN');
});

test('shortestF32 gives the shortest decimal that reads back', () => {
  assert.equal(shortestF32(Math.fround(0.1)), 0.1);
  assert.equal(shortestF32(Math.fround(-2.5)), -2.5);
  assert.ok(Object.is(shortestF32(-0), -0));
  assert.ok(Number.isNaN(shortestF32(NaN)));
  assert.equal(shortestF32(-Infinity), -Infinity);
  // Random float32 values of every magnitude: the decimal reads back, and
  // no decimal with one digit fewer does.
  const view = new DataView(new ArrayBuffer(4));
  let seed = 12345;
  for (let i = 0; i < 20000; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    view.setUint32(0, seed & 0x7f7fffff);
    const x = view.getFloat32(0);
    if (x === 0) continue;
    const decimal = shortestF32(x);
    assert.equal(Math.fround(decimal), x);
    const digits = decimal.toExponential().split('e')[0].replace('.', '').length;
    assert.ok(digits <= 9);
    if (digits > 1) assert.notEqual(Math.fround(Number(x.toPrecision(digits - 1))), x, `${x} has a shorter decimal`);
  }
});

test('float32 accessors, text and row JSON', () => {
  const x = Math.fround(0.1);
  assert.equal(asF32(float32(x)), x);
  assert.equal(asF32({ tag: 'float64', val: 0.5 }), undefined);
  assert.equal(asF32(undefined), undefined);
  assert.equal(asF64(float32(x)), x, 'the float64 accessor takes a float32, exactly');
  assert.equal(asF64({ tag: 'float64', val: 0.5 }), 0.5);
  assert.equal(toText(float32(x)), '0.1');
  assert.equal(toText(float32(2)), '2.0');
  const change = {
    keys: [{ name: 'Id', value: { tag: 'int64', val: 1n } }],
    newValues: [
      { name: 'Ratio', value: float32(x) },
      { name: 'Big', value: float32(16777216) },
      { name: 'Gone', value: float32(-Infinity) },
    ],
  };
  assert.equal(stringify(rowJson(change)), '{"Big":16777216.0,"Gone":"-Infinity","Id":1,"Ratio":0.1}');
});

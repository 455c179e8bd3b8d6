// Decoding the batch text of contract 0.4.0: node --test plugin-sdk/js/test/

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { asF32, asI64, asString, decodeBatch, keyValue, newValue, oldValue, rowJson, stringify, toJson } from '../redis-spanner-sdk.js';

const int64 = (val) => ({ tag: 'int64', val });
const string = (val) => ({ tag: 'string', val });
const cell = (column, value) => ({ column, value });

const TAGS = { int64: 'i', float32: 'g', float64: 'f', string: 's', bytes: 'b', timestamp: 't', date: 'd', numeric: 'n', json: 'j' };
const KIND_INDEX = { insert: 0, update: 1, delete: 2, snapshot: 3 };

/** A value variant as the batch text carries it, written apart from the SDK. */
function valueText(value) {
  if (value.tag === 'null') return null;
  if (value.tag === 'bool') return value.val;
  const tag = TAGS[value.tag];
  if (value.tag === 'float32' || value.tag === 'float64') {
    const f = value.val;
    return tag + (Number.isNaN(f) ? 'NaN' : Object.is(f, -0) ? '-0.0' : String(f));
  }
  if (value.tag === 'bytes') return tag + Buffer.from(value.val).toString('base64');
  return tag + String(value.val);
}

/** The batch text (a Uint8Array) of a batch in the WIT record's shape. */
function batchText(batch) {
  const cells = (list) => list.flatMap((c) => [c.column, valueText(c.value)]);
  return new TextEncoder().encode(
    JSON.stringify([
      batch.tables.map((t) => [t.name, t.keyColumns, t.columns]),
      batch.transactions.map((t) => [t.id, t.tag, String(t.commitMicros)]),
      batch.changes.map((c) => [
        c.table,
        KIND_INDEX[c.kind] ?? c.kind,
        c.keys.map(valueText),
        cells(c.newValues),
        cells(c.oldValues),
        c.transaction,
        c.recordSequence,
      ]),
    ]),
  );
}

/** A decoded change's fields, as a plain object. */
const plain = (c) => ({
  table: c.table,
  kind: c.kind,
  keys: c.keys,
  newValues: c.newValues,
  oldValues: c.oldValues,
  commitMicros: c.commitMicros,
  transactionId: c.transactionId,
  recordSequence: c.recordSequence,
  transactionTag: c.transactionTag,
});

// Two tables, two transactions (the first shared by changes of both
// tables), a partial update with old values, a snapshot and a delete.
function wire() {
  return {
    tables: [
      { name: 'Users', keyColumns: ['UserId'], columns: ['Name', 'Email', 'Score'] },
      { name: 'Orders', keyColumns: ['UserId', 'OrderId'], columns: ['Total', 'Note'] },
    ],
    transactions: [
      { id: 'tx1', tag: 'checkout', commitMicros: 1700000000000000n },
      { id: '', tag: '', commitMicros: 1700000000000001n },
    ],
    changes: [
      {
        table: 0,
        kind: 'update',
        keys: [int64(42n)],
        newValues: [cell(2, { tag: 'float32', val: Math.fround(0.1) }), cell(0, string('Ada'))],
        oldValues: [cell(0, string('Ad'))],
        transaction: 0,
        recordSequence: 0,
      },
      {
        table: 1,
        kind: 'insert',
        keys: [int64(42n), int64(7n)],
        newValues: [cell(0, { tag: 'numeric', val: '12.50' }), cell(1, { tag: 'null' })],
        oldValues: [],
        transaction: 0,
        recordSequence: 1,
      },
      {
        table: 0,
        kind: 'snapshot',
        keys: [int64(43n)],
        newValues: [cell(0, string('Bob')), cell(1, string('bob@example.com')), cell(2, { tag: 'null' })],
        oldValues: [],
        transaction: 1,
        recordSequence: 0,
      },
      { table: 1, kind: 'delete', keys: [int64(42n), int64(8n)], newValues: [], oldValues: [], transaction: 1, recordSequence: 4294967295 },
    ],
  };
}

test('a compact batch decodes to named changes', () => {
  const changes = decodeBatch(batchText(wire()));
  assert.equal(changes.length, 4);
  assert.deepEqual(plain(changes[0]), {
    table: 'Users',
    kind: 'update',
    keys: [{ name: 'UserId', value: int64(42n) }],
    newValues: [
      { name: 'Score', value: { tag: 'float32', val: Math.fround(0.1) } },
      { name: 'Name', value: string('Ada') },
    ],
    oldValues: [{ name: 'Name', value: string('Ad') }],
    commitMicros: 1700000000000000n,
    transactionId: 'tx1',
    recordSequence: 0,
    transactionTag: 'checkout',
  });
  assert.deepEqual(plain(changes[1]), {
    table: 'Orders',
    kind: 'insert',
    keys: [
      { name: 'UserId', value: int64(42n) },
      { name: 'OrderId', value: int64(7n) },
    ],
    newValues: [
      { name: 'Total', value: { tag: 'numeric', val: '12.50' } },
      { name: 'Note', value: { tag: 'null' } },
    ],
    oldValues: [],
    commitMicros: 1700000000000000n,
    transactionId: 'tx1',
    recordSequence: 1,
    transactionTag: 'checkout',
  });
  assert.deepEqual(
    changes.map((c) => [c.table, c.kind, c.transactionId, c.transactionTag, c.commitMicros, c.recordSequence]),
    [
      ['Users', 'update', 'tx1', 'checkout', 1700000000000000n, 0],
      ['Orders', 'insert', 'tx1', 'checkout', 1700000000000000n, 1],
      ['Users', 'snapshot', '', '', 1700000000000001n, 0],
      ['Orders', 'delete', '', '', 1700000000000001n, 4294967295],
    ],
  );
  assert.equal(typeof changes[0].recordSequence, 'number');
});

test('helpers work on decoded changes, partial ones included', () => {
  const [update, order, snapshot, deleted] = decodeBatch(batchText(wire()));
  assert.equal(asI64(keyValue(update, 'UserId')), 42n);
  assert.equal(asString(newValue(update, 'Name')), 'Ada');
  assert.equal(asF32(newValue(update, 'Score')), Math.fround(0.1));
  assert.equal(newValue(update, 'Email'), undefined, 'a column the update does not carry');
  assert.equal(asString(oldValue(update, 'Name')), 'Ad');
  assert.equal(oldValue(update, 'Score'), undefined);
  assert.equal(stringify(rowJson(update)), '{"Name":"Ada","Score":0.1,"UserId":42}');
  assert.equal(stringify(rowJson(order)), '{"Note":null,"OrderId":7,"Total":"12.50","UserId":42}');
  assert.equal(stringify(rowJson(snapshot)), '{"Email":"bob@example.com","Name":"Bob","Score":null,"UserId":43}');
  assert.equal(stringify(rowJson(deleted)), '{"OrderId":8,"UserId":42}');
  assert.equal(stringify(rowJson(order, { int64AsString: true })), '{"Note":null,"OrderId":"7","Total":"12.50","UserId":"42"}');
});

test('an empty batch decodes to no changes', () => {
  assert.deepEqual(decodeBatch('[[],[],[]]'), []);
});

test('every value type reads back exactly, through the variants and rowJson', () => {
  const values = [
    { tag: 'null' },
    { tag: 'bool', val: true },
    { tag: 'bool', val: false },
    int64(-(2n ** 63n)),
    int64(2n ** 63n - 1n),
    { tag: 'float32', val: Math.fround(0.1) },
    { tag: 'float32', val: -Infinity },
    { tag: 'float64', val: 0.1 },
    { tag: 'float64', val: -0 },
    { tag: 'float64', val: 5e-324 },
    { tag: 'float64', val: NaN },
    string('a"b\\c\n\u0001é😀'),
    { tag: 'bytes', val: new Uint8Array([0, 255, 1]) },
    { tag: 'timestamp', val: '2024-01-02T03:04:05Z' },
    { tag: 'date', val: '2024-01-02' },
    { tag: 'numeric', val: '1.50' },
    { tag: 'json', val: '{"a":[1,2.5]}' },
    { tag: 'json', val: 'not json' },
  ];
  const columns = values.map((_, i) => `c${String(i).padStart(2, '0')}`);
  const batch = {
    tables: [{ name: 'T', keyColumns: ['Id', 'c00'], columns }],
    transactions: [{ id: '', tag: '', commitMicros: 1n }],
    changes: [
      {
        table: 0,
        kind: 'insert',
        keys: [int64(1n), string('a later column of the same name wins')],
        newValues: values.map((value, i) => cell(i, value)),
        oldValues: [],
        transaction: 0,
        recordSequence: 0,
      },
    ],
  };
  const [lazy] = decodeBatch(batchText(batch));
  for (const int64AsString of [false, true, 1]) {
    const [named] = decodeBatch(batchText(batch));
    named.keys; // named first: rowJson reads the variants, not the text
    named.newValues;
    assert.equal(stringify(rowJson(lazy, { int64AsString })), stringify(rowJson(named, { int64AsString })));
  }
  assert.deepEqual(
    lazy.newValues.map((c) => c.value),
    values,
  );
  assert.ok(Object.is(lazy.newValues[8].value.val, -0));
  assert.match(stringify(rowJson(lazy)), /"c00":null/);
});

test('helpers see columns a plugin replaced', () => {
  const [update] = decodeBatch(batchText(wire()));
  update.newValues = [{ name: 'Name', value: string('Eve') }];
  update.keys = [{ name: 'UserId', value: int64(9n) }];
  assert.equal(stringify(rowJson(update)), '{"Name":"Eve","UserId":9}');
  assert.equal(asString(newValue(update, 'Name')), 'Eve');
  assert.equal(asI64(keyValue(update, 'UserId')), 9n);
});

test('a change pointing outside the batch is an error naming it', () => {
  const cases = [
    [(b) => (b.changes[1].table = 2), "change 1: table index 2 is outside the batch's 2 tables"],
    [(b) => (b.changes[1].table = -1), "change 1: table index -1 is outside the batch's 2 tables"],
    [(b) => (b.changes[2].transaction = 2), "change 2 (table Users): transaction index 2 is outside the batch's 2 transactions"],
    [(b) => (b.changes[2].kind = 4), 'change 2 (table Users): kind 4 is not a change kind'],
    [(b) => b.changes[3].keys.pop(), 'change 3 (table Orders): 1 key values for 2 key columns'],
    [(b) => b.changes[0].keys.push(int64(1n)), 'change 0 (table Users): 2 key values for 1 key columns'],
    // What the Rust and Python readers refuse too.
    [(b) => (b.changes[2].kind = true), 'change 2 (table Users): kind true is not a change kind'],
    [(b) => (b.changes[2].recordSequence = -1), 'change 2 (table Users): record sequence -1 is not a number below 2^32'],
    [(b) => (b.changes[3].recordSequence = 4294967296), 'change 3 (table Orders): record sequence 4294967296 is not a number below 2^32'],
    [(b) => (b.changes[2].recordSequence = '0'), 'change 2 (table Users): record sequence "0" is not a number below 2^32'],
    [(b) => (b.changes[2].recordSequence = 1.5), 'change 2 (table Users): record sequence 1.5 is not a number below 2^32'],
  ];
  for (const [breakIt, message] of cases) {
    const batch = wire();
    breakIt(batch);
    assert.throws(() => decodeBatch(batchText(batch)), (e) => e instanceof RangeError && e.message === message, message);
  }
  assert.throws(() => decodeBatch('nope'), /^TypeError: the batch is not the JSON text of contract 0.4.0/);
  assert.throws(() => decodeBatch('{}'), /not \[tables, transactions, changes\]/);
});

test('a bad column index or value is an error when read', () => {
  const cases = [
    [(b) => (b.changes[0].newValues[0].column = 3), "column index 3 is outside table Users's 3 columns"],
    [(b) => (b.changes[0].newValues[0].column = -1), "column index -1 is outside table Users's 3 columns"],
    [(b) => (b.changes[0].newValues[0].value = { tag: 'int64', val: 'x' }), '"ix" is not a value of the batch text'],
  ];
  for (const [breakIt, message] of cases) {
    const batch = wire();
    breakIt(batch);
    for (const read of [(c) => c.newValues, (c) => rowJson(c)]) {
      const [change] = decodeBatch(batchText(batch));
      assert.throws(() => read(change), (e) => e.message === message, message);
    }
  }
  // BYTES that are no base64, read through the variants and rowJson alike;
  // INT64s as text are written as the named path writes the BigInt.
  for (const [text, expected] of [['!!', undefined], ['QR==', 'QQ=='], ['QQ==', 'QQ==']]) {
    const parts = JSON.parse(new TextDecoder().decode(batchText(wire())));
    parts[2][0][3][3] = `b${text}`; // change 0's Name
    const read = () => decodeBatch(JSON.stringify(parts))[0];
    if (expected === undefined) {
      assert.throws(() => read().newValues, /"b!!" is not a value of the batch text/);
      assert.throws(() => rowJson(read()), /"b!!" is not a value of the batch text/);
    } else {
      assert.equal(rowJson(read()).Name, expected);
      assert.equal(toJson(read().newValues[1].value), expected);
    }
  }
  // Texts BigInt alone would read (hexadecimal, binary, signs, spaces) are
  // no INT64s, on either path.
  for (const text of ['0x10', '0b11', '+7', ' 7', '']) {
    const parts = JSON.parse(new TextDecoder().decode(batchText(wire())));
    parts[2][0][2][0] = `i${text}`;
    const message = `${JSON.stringify(`i${text}`)} is not a value of the batch text`;
    assert.throws(() => rowJson(decodeBatch(JSON.stringify(parts))[0]), (e) => e.message === message, text);
    assert.throws(() => decodeBatch(JSON.stringify(parts))[0].keys, (e) => e.message === message, text);
  }
  for (const [text, expected] of [['007', '7'], ['-0', '0'], ['42', '42']]) {
    const parts = JSON.parse(new TextDecoder().decode(batchText(wire())));
    parts[2][0][2][0] = `i${text}`;
    const [lazy] = decodeBatch(JSON.stringify(parts));
    const [named] = decodeBatch(JSON.stringify(parts));
    named.keys; // names the values: rowJson then takes the named path
    assert.equal(rowJson(lazy, { int64AsString: true }).UserId, expected);
    assert.equal(rowJson(named, { int64AsString: true }).UserId, expected);
  }
  const batch = wire();
  batch.changes[0].oldValues[0].column = 9;
  const [change] = decodeBatch(batchText(batch));
  assert.throws(() => change.oldValues, /column index 9 is outside table Users's 3 columns/);
});

test('a bad value read in onChange is reported once with its change', async () => {
  const { definePlugin, eachChange, key } = await import('../redis-spanner-sdk.js');
  const batch = wire();
  batch.changes[1].newValues[0].value = { tag: 'int64', val: 'x' };
  const plugin = definePlugin({ onChange: (change) => (change.newValues, []) });
  plugin.init();
  assert.throws(
    () => plugin.onChanges(batchText(batch)),
    (e) => e === 'change 1 (table Orders): "ix" is not a value of the batch text',
  );
  const badMicros = JSON.parse(new TextDecoder().decode(batchText(wire())));
  badMicros[1][1][2] = 'abc';
  assert.throws(
    () => decodeBatch(JSON.stringify(badMicros)),
    (e) => e.message === 'change 2 (table Users): commit micros "abc" is not an integer',
  );
  // A fourth part is not taken for the commit micros the SDK keeps there.
  const fourParts = JSON.parse(new TextDecoder().decode(batchText(wire())));
  fourParts[1][1][2] = 'abc';
  fourParts[1][1].push(5);
  assert.throws(
    () => decodeBatch(JSON.stringify(fourParts)),
    (e) => e.message === 'change 2 (table Users): transaction ["","","abc",5] is not [id, tag, "commit micros"]',
  );
  assert.throws(() => key('users'), /key parts must be an array, not string/);
  assert.throws(() => eachChange((function* () {})(), () => []), /changes must be an array/);
});

test('every value of the host text reads exactly (tests/fixtures/conformance/batch-text.json)', async () => {
  const { readFileSync } = await import('node:fs');
  const golden = JSON.parse(readFileSync(new URL('../../../tests/fixtures/conformance/batch-text.json', import.meta.url), 'utf8'));
  const [change] = decodeBatch(new TextEncoder().encode(golden.text));
  assert.equal(change.commitMicros, BigInt(golden.commit_micros));
  assert.equal(change.kind, 'snapshot');
  assert.equal(change.newValues.length, golden.new_values.length);
  const bitsOf = (f) => {
    const view = new DataView(new ArrayBuffer(8));
    view.setFloat64(0, f);
    return view.getBigUint64(0).toString(16).padStart(16, '0');
  };
  change.newValues.forEach(({ name, value }, i) => {
    const expected = golden.new_values[i];
    assert.equal(value.tag, expected.type, name);
    if (expected.bits !== undefined) assert.equal(bitsOf(value.val), expected.bits, name);
    else if (expected.type === 'int64') assert.equal(value.val, BigInt(expected.value), name);
    else if (expected.type === 'bytes') assert.deepEqual([...value.val], expected.value, name);
    else if (expected.value !== undefined) assert.equal(value.val, expected.value, name);
  });
  const [lazy] = decodeBatch(golden.text);
  const [named] = decodeBatch(golden.text);
  named.keys;
  named.newValues;
  assert.equal(stringify(rowJson(lazy)), stringify(rowJson(named)));
});

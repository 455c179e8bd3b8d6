// Decoding the compact wire batch of contract 0.3.0: node --test plugin-sdk/js/test/

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { asF32, asI64, asString, decodeBatch, keyValue, newValue, oldValue, rowJson, stringify } from '../redis-spanner-sdk.js';

const int64 = (val) => ({ tag: 'int64', val });
const string = (val) => ({ tag: 'string', val });
const cell = (column, value) => ({ column, value });

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
  const changes = decodeBatch(wire());
  assert.equal(changes.length, 4);
  assert.deepEqual(changes[0], {
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
  assert.deepEqual(changes[1], {
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
  const [update, order, snapshot, deleted] = decodeBatch(wire());
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
  assert.deepEqual(decodeBatch({ tables: [], transactions: [], changes: [] }), []);
});

test('a change pointing outside the batch is an error naming it', () => {
  const cases = [
    [(b) => (b.changes[1].table = 2), "change 1: table index 2 is outside the batch's 2 tables"],
    [(b) => (b.changes[2].transaction = 2), "change 2 (table Users): transaction index 2 is outside the batch's 2 transactions"],
    [(b) => (b.changes[0].newValues[0].column = 3), "change 0 (table Users): column index 3 is outside the table's 3 columns"],
    [(b) => (b.changes[0].oldValues[0].column = 9), "change 0 (table Users): column index 9 is outside the table's 3 columns"],
    [(b) => b.changes[3].keys.pop(), 'change 3 (table Orders): 1 key values for 2 key columns'],
    [(b) => b.changes[0].keys.push(int64(1n)), 'change 0 (table Users): 2 key values for 1 key columns'],
  ];
  for (const [breakIt, message] of cases) {
    const batch = wire();
    breakIt(batch);
    assert.throws(() => decodeBatch(batch), (e) => e instanceof RangeError && e.message === message, message);
  }
});

// Cache events and their answers: node --test plugin-sdk/js/test/

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { CacheEffect, cacheAction, definePlugin, eachCacheEvent, field, refresh } from '../redis-spanner-sdk.js';

const int64 = (val) => ({ tag: 'int64', val });

function event(kind, key, fields = []) {
  return { source: 'application', kind, key, fields, id: '1700000000000-0' };
}

/** Refreshes `users:<id>` on a miss, fails on `bad:` keys. */
const refresher = {
  init() {
    return { table: 'Users' };
  },
  onCacheEvent(e, state) {
    if (e.key.startsWith('bad:')) throw new Error('no good');
    if (e.kind !== 'miss' || !e.key.startsWith('users:')) return [];
    return [refresh(state.table, [['UserId', int64(BigInt(e.key.slice(6)))]])];
  },
};

test('refresh builds the cache effect from [name, value] pairs', () => {
  const expected = {
    tag: 'refresh',
    val: {
      table: 'Orders',
      keys: [
        { name: 'UserId', value: int64(7n) },
        { name: 'OrderId', value: { tag: 'string', val: 'A-1' } },
      ],
    },
  };
  const pairs = [
    ['UserId', int64(7n)],
    ['OrderId', { tag: 'string', val: 'A-1' }],
  ];
  assert.deepEqual(refresh('Orders', pairs), expected);
  assert.deepEqual(refresh('Orders', new Map(pairs)), expected);
  assert.deepEqual(CacheEffect.refresh('Orders', pairs), expected);
  assert.deepEqual(refresh('Users', []), { tag: 'refresh', val: { table: 'Users', keys: [] } });
  assert.throws(() => refresh(42, []), TypeError);
  assert.throws(() => refresh('Users', [[1, int64(1n)]]), TypeError);
});

test('cacheAction tags a cache effect with its event', () => {
  const effect = refresh('Users', [['UserId', int64(1n)]]);
  assert.deepEqual(cacheAction(3, effect), { event: 3, effect });
});

test('field reads a stream entry field', () => {
  const e = event('miss', 'users:1', [
    ['by', 'web'],
    ['why', 'cold'],
    ['by', 'later'],
  ]);
  assert.equal(field(e, 'by'), 'web');
  assert.equal(field(e, 'why'), 'cold');
  assert.equal(field(e, 'missing'), undefined);
  assert.equal(field({ ...e, fields: [] }, 'by'), undefined);
});

test('default onCacheEvents tags effects with the event index', () => {
  const plugin = definePlugin(refresher);
  plugin.init();
  const batch = [event('miss', 'users:1'), event('expired', 'users:2'), event('miss', 'orders:3'), event('miss', 'users:4')];
  assert.deepEqual(plugin.onCacheEvents(batch), [
    { event: 0, effect: refresh('Users', [['UserId', int64(1n)]]) },
    { event: 3, effect: refresh('Users', [['UserId', int64(4n)]]) },
  ]);
  assert.deepEqual(plugin.onCacheEvents([]), []);
});

test('onCacheEvent gets the state and the event index; one effect needs no array', () => {
  const seen = [];
  const plugin = definePlugin({
    init: () => 'state',
    onCacheEvent(e, state, index) {
      seen.push([e.key, state, index]);
      return index === 1 ? undefined : refresh('T', [['K', int64(BigInt(index))]]);
    },
  });
  plugin.init();
  assert.deepEqual(plugin.onCacheEvents([event('miss', 'a'), event('miss', 'b'), event('miss', 'c')]), [
    { event: 0, effect: refresh('T', [['K', int64(0n)]]) },
    { event: 2, effect: refresh('T', [['K', int64(2n)]]) },
  ]);
  assert.deepEqual(seen, [
    ['a', 'state', 0],
    ['b', 'state', 1],
    ['c', 'state', 2],
  ]);
});

test('a definition onCacheEvents gets the whole batch and the state', () => {
  const plugin = definePlugin({
    init: () => 'Users',
    onCacheEvents(events, table) {
      return [cacheAction(events.length - 1, refresh(table, [['UserId', int64(9n)]]))];
    },
  });
  plugin.init();
  assert.deepEqual(plugin.onCacheEvents([event('miss', 'a'), event('miss', 'b')]), [
    { event: 1, effect: refresh('Users', [['UserId', int64(9n)]]) },
  ]);
});

test('cache event errors become strings naming the event', () => {
  const plugin = definePlugin(refresher);
  assert.throws(() => plugin.onCacheEvents([event('miss', 'users:1')]), (e) => e === 'on-cache-events was called before init succeeded');
  plugin.init();
  assert.throws(
    () => plugin.onCacheEvents([event('miss', 'users:1'), event('miss', 'bad:7')]),
    (e) => e === 'event 1 (key bad:7): no good',
  );
  assert.throws(
    () => eachCacheEvent([event('evicted', 'k')], () => {
      throw 'plain';
    }),
    (e) => e === 'event 0 (key k): plain',
  );
  const failing = definePlugin({
    onCacheEvents() {
      throw new Error('whole batch failed');
    },
  });
  failing.init();
  assert.throws(() => failing.onCacheEvents([event('miss', 'a')]), (e) => e === 'whole batch failed');
});

test('a plugin without onCacheEvent ignores every event', () => {
  const plugin = definePlugin({ onChange: () => [] });
  plugin.init();
  assert.deepEqual(plugin.onCacheEvents([event('miss', 'users:1')]), []);
});

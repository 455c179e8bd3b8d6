// Caches each row of the `Users` table as a JSON object under `users:{UserId}`,
// and refreshes a user's row when a cache event of one of the kinds in the
// manifest's `refresh_on` setting (default `miss`; e.g. `miss,evicted`)
// reports its key. The JavaScript twin of plugins/users-cache (Rust): same
// keys, same bytes, same refreshes.
//
// Two optional settings use the host's keyring (the plugin's grant must list
// the key names):
//
// - `seal_with = "<key name>"`: each row is sealed with that key, the Redis
//   key as associated data, instead of stored as plain JSON.
// - `email_index_with = "<key name>"`: a row whose `Email` is a string also
//   sets `users:by-email:<keyed hash of the e-mail>` to its `UserId`, so the
//   address never appears in a key.

import * as crypto from 'redis-spanner:plugin/crypto@0.4.0';
import { config } from 'redis-spanner:plugin/host@0.4.0';
import {
  Effect,
  asI64,
  asString,
  definePlugin,
  key,
  keyValue,
  keyedHash,
  newValue,
  refresh,
  rowJson,
  seal,
  stringify,
  useCrypto,
} from '../../plugin-sdk/js/redis-spanner-sdk.js';

useCrypto(crypto);

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

// Rust's `str::trim`: Unicode White_Space, which differs from JavaScript's
// `trim` in U+0085 (trimmed) and U+FEFF (kept).
const RUST_WHITESPACE = /^[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|[\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$/g;

/** A setting of the manifest's `[config]`, undefined when absent or empty. */
function setting(name) {
  const value = config(name);
  return value === undefined || value === '' ? undefined : value;
}

/** The cache event kinds answered with a refresh: `refresh_on`, comma separated. */
function refreshKinds() {
  return (config('refresh_on') ?? 'miss')
    .split(',')
    .map((kind) => kind.replace(RUST_WHITESPACE, ''))
    .filter((kind) => kind !== '');
}

/**
 * The user id in a key this plugin writes, `users:` and a decimal INT64 (as
 * Rust's `i64` parses it: an optional sign, ASCII digits), or undefined.
 */
function userId(redisKey) {
  if (!redisKey.startsWith('users:')) return undefined;
  const text = redisKey.slice('users:'.length);
  if (!/^[+-]?[0-9]+$/.test(text)) return undefined;
  const id = BigInt(text);
  return id >= I64_MIN && id <= I64_MAX ? id : undefined;
}

const plugin = definePlugin({
  init() {
    return {
      refreshOn: refreshKinds(),
      sealWith: setting('seal_with'),
      emailIndexWith: setting('email_index_with'),
    };
  },

  onChange(change, state) {
    if (change.table !== 'Users') return [];
    const id = asI64(keyValue(change, 'UserId'));
    if (id === undefined) throw 'Users row without an INT64 UserId';
    const rowKey = key(['users', id.toString()]);
    if (change.kind === 'delete') return [Effect.delete(rowKey)];
    const row = stringify(rowJson(change));
    const value = state.sealWith === undefined ? row : seal(state.sealWith, row, rowKey);
    const effects = [Effect.set(rowKey, value)];
    // The setting first, as the Rust twin does: no lookup when unset.
    if (state.emailIndexWith !== undefined) {
      const email = asString(newValue(change, 'Email'));
      if (email !== undefined) {
        const hash = keyedHash(state.emailIndexWith, email);
        effects.push(Effect.set(key(['users', 'by-email', hash]), id.toString()));
      }
    }
    return effects;
  },

  onCacheEvent(event, state) {
    if (!state.refreshOn.includes(event.kind)) return [];
    // Only keys this plugin writes.
    const id = userId(event.key);
    if (id === undefined) return [];
    return [refresh('Users', [['UserId', { tag: 'int64', val: id }]])];
  },
});

export const init = plugin.init;
export const onChanges = plugin.onChanges;
export const onCacheEvents = plugin.onCacheEvents;

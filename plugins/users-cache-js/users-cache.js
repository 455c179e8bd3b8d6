// Caches each row of the `Users` table as a JSON object under `users:{UserId}`.
// The JavaScript twin of plugins/users-cache (Rust): same keys, same bytes.

import { Effect, asI64, definePlugin, key, keyValue, rowJson, stringify } from '../../plugin-sdk/js/redis-spanner-sdk.js';

const plugin = definePlugin({
  // The plugin keeps no state.
  init() {},

  onChange(change) {
    if (change.table !== 'Users') return [];
    const id = asI64(keyValue(change, 'UserId'));
    if (id === undefined) throw 'Users row without an INT64 UserId';
    const k = key(['users', id.toString()]);
    return [change.kind === 'delete' ? Effect.delete(k) : Effect.set(k, stringify(rowJson(change)))];
  },
});

export const init = plugin.init;
export const onChanges = plugin.onChanges;

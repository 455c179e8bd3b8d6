// {{name}}: caches each row of the `{{table}}` table as JSON under
// `<prefix>:<key>:<key>…`: every primary key column in key order, as text
// (any key type, composite keys too), escaped by `key`. A `miss` on such a
// key (an application found it missing) refreshes that row from Spanner.
// The prefix comes from the manifest's `[config] prefix`.

import { config } from 'redis-spanner:plugin/host@0.4.0';
import {
  Effect,
  definePlugin,
  key,
  refresh,
  rowJson,
  splitKey,
  stringify,
  toText,
  valueFromText,
} from './redis-spanner-sdk.js';

// The table's primary key columns, in key order, with their Spanner types.
const KEY_COLUMNS = {{key_columns}};

const plugin = definePlugin({
  // What init returns is the state every later call gets.
  init() {
    return { prefix: config('prefix') ?? '{{name}}' };
  },

  onChange(change, state) {
    if (change.table !== '{{table}}') return [];
    const parts = [state.prefix];
    for (const column of change.keys) {
      const part = toText(column.value);
      if (part === undefined) throw `{{table}} row with a NULL key column ${column.name}`;
      parts.push(part);
    }
    const k = key(parts);
    return [change.kind === 'delete' ? Effect.delete(k) : Effect.set(k, stringify(rowJson(change)))];
  },

  onCacheEvent(event, state) {
    if (event.kind !== 'miss') return [];
    // A missed `<prefix>:<key>:<key>…`: the key of the row behind it.
    const parts = splitKey(event.key);
    if (parts === undefined || parts[0] !== state.prefix || parts.length !== KEY_COLUMNS.length + 1) return [];
    const keys = KEY_COLUMNS.map(([name, type], i) => [name, valueFromText(type, parts[i + 1])]);
    if (keys.some(([, value]) => value === undefined)) return [];
    // The host reads the row and hands it to `onChange` as a snapshot (or as
    // a delete when the row is gone).
    return [refresh('{{table}}', keys)];
  },
});

export const init = plugin.init;
export const onChanges = plugin.onChanges;
export const onCacheEvents = plugin.onCacheEvents;

// {{name}}: caches each row of the `{{table}}` table as JSON under
// `<prefix>:<key>:<key>…`: every primary key column in key order, as text
// (any key type, composite keys too), escaped by `key`. The prefix comes
// from the manifest's `[config] prefix`.

import { config } from 'redis-spanner:plugin/host@0.3.0';
import { Effect, definePlugin, key, rowJson, stringify, toText } from './redis-spanner-sdk.js';

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
});

export const init = plugin.init;
export const onChanges = plugin.onChanges;

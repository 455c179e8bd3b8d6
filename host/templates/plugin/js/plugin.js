// {{name}}: caches each row of the `{{table}}` table as JSON under
// `<prefix>:<{{key_column}}>`, where the prefix comes from the manifest's
// `[config] prefix`.

import { config } from 'redis-spanner:plugin/host@0.1.0';
import { Effect, asI64, definePlugin, key, keyValue, rowJson, stringify } from './redis-spanner-sdk.js';

const plugin = definePlugin({
  // What init returns is the state every later call gets.
  init() {
    return { prefix: config('prefix') ?? '{{name}}' };
  },

  onChange(change, state) {
    if (change.table !== '{{table}}') return [];
    const id = asI64(keyValue(change, '{{key_column}}'));
    if (id === undefined) throw '{{table}} row without an INT64 {{key_column}}';
    const k = key([state.prefix, id.toString()]);
    return [change.kind === 'delete' ? Effect.delete(k) : Effect.set(k, stringify(rowJson(change)))];
  },
});

export const init = plugin.init;
export const onChanges = plugin.onChanges;

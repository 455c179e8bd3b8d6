"""{{name}}: caches each row of the `{{table}}` table as JSON under
`<prefix>:<{{key_column}}>`, where the prefix comes from the manifest's
`[config] prefix`."""

from redis_spanner_sdk import (
    ChangeKind,
    Err,
    Plugin,
    as_i64,
    config,
    dumps,
    effect_delete,
    effect_set,
    key,
    key_value,
    register_plugin,
    row_json_of,
)


class Cache(Plugin):
    """The plugin's state: settings read once, at load."""

    def init(self):
        self.prefix = config("prefix") or "{{name}}"

    def on_change(self, change):
        if change.table != "{{table}}":
            return []
        row_id = as_i64(key_value(change, "{{key_column}}"))
        if row_id is None:
            raise Err("{{table}} row without an INT64 {{key_column}}")
        k = key([self.prefix, str(row_id)])
        if change.kind == ChangeKind.DELETE:
            return [effect_delete(k)]
        return [effect_set(k, dumps(row_json_of(change)))]


WitWorld = register_plugin(Cache)

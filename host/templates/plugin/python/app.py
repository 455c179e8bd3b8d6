"""{{name}}: caches each row of the `{{table}}` table as JSON under
`<prefix>:<key>:<key>...`: every primary key column in key order, as text
(any key type, composite keys too), escaped by `key`. The prefix comes from
the manifest's `[config] prefix`."""

from redis_spanner_sdk import (
    ChangeKind,
    Err,
    Plugin,
    config,
    dumps,
    effect_delete,
    effect_set,
    key,
    register_plugin,
    row_json_of,
    to_text,
)


class Cache(Plugin):
    """The plugin's state: settings read once, at load."""

    def init(self):
        self.prefix = config("prefix") or "{{name}}"

    def on_change(self, change):
        if change.table != "{{table}}":
            return []
        parts = [self.prefix]
        for column in change.keys:
            part = to_text(column.value)
            if part is None:
                raise Err(f"{{table}} row with a NULL key column {column.name}")
            parts.append(part)
        k = key(parts)
        if change.kind == ChangeKind.DELETE:
            return [effect_delete(k)]
        return [effect_set(k, dumps(row_json_of(change)))]


WitWorld = register_plugin(Cache)

"""{{name}}: caches each row of the `{{table}}` table as JSON under
`<prefix>:<key>:<key>...`: every primary key column in key order, as text
(any key type, composite keys too), escaped by `key`. A `miss` on such a key
(an application found it missing) refreshes that row from Spanner. The
prefix comes from the manifest's `[config] prefix`."""

from redis_spanner_sdk import (
    ChangeKind,
    Err,
    Plugin,
    config,
    effect_delete,
    effect_set,
    key,
    refresh,
    register_plugin,
    row_json_bytes,
    split_key,
    to_text,
    value_from_text,
)

# The table's primary key columns, in key order, with their Spanner types.
KEY_COLUMNS = {{key_columns}}


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
        return [effect_set(k, row_json_bytes(change))]

    def on_cache_event(self, event):
        if event.kind != "miss":
            return []
        # A missed `<prefix>:<key>:<key>...`: the key of the row behind it.
        parts = split_key(event.key)
        if parts is None or parts[0] != self.prefix or len(parts) != len(KEY_COLUMNS) + 1:
            return []
        keys = []
        for (name, spanner_type), text in zip(KEY_COLUMNS, parts[1:]):
            value = value_from_text(spanner_type, text)
            if value is None:
                return []
            keys.append((name, value))
        # The host reads the row and hands it to `on_change` as a snapshot
        # (or as a delete when the row is gone).
        return [refresh("{{table}}", keys)]


WitWorld = register_plugin(Cache)

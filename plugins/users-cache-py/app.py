"""Caches each row of the `Users` table as a JSON object under `users:{UserId}`.

The Python twin of plugins/users-cache (Rust): same keys, same bytes.
"""

from redis_spanner_sdk import (
    ChangeKind,
    Err,
    Plugin,
    as_i64,
    dumps,
    effect_delete,
    effect_set,
    key,
    key_value,
    register_plugin,
    row_json_of,
)


class UsersCache(Plugin):
    """The plugin; it keeps no state."""

    def on_change(self, change):
        if change.table != "Users":
            return []
        user_id = as_i64(key_value(change, "UserId"))
        if user_id is None:
            raise Err("Users row without an INT64 UserId")
        k = key(["users", str(user_id)])
        if change.kind == ChangeKind.DELETE:
            return [effect_delete(k)]
        return [effect_set(k, dumps(row_json_of(change)))]


WitWorld = register_plugin(UsersCache)

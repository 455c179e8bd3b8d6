"""Caches each row of the `Users` table as a JSON object under `users:{UserId}`,
and refreshes a user's row when a cache event of one of the kinds in the
manifest's `refresh_on` setting (default `miss`; e.g. `miss,evicted`)
reports its key.

The Python twin of plugins/users-cache (Rust): same keys, same bytes, same
refresh requests.
"""

import re

from redis_spanner_sdk import (
    ChangeKind,
    Err,
    Plugin,
    Value_Int64,
    as_i64,
    config,
    dumps,
    effect_delete,
    effect_set,
    key,
    key_value,
    refresh,
    register_plugin,
    row_json_of,
)

# What Rust's `str::parse::<i64>` accepts: an optional sign and ASCII digits.
_DECIMAL = re.compile(r"[+-]?[0-9]+")


def user_id_of(cache_key):
    """The UserId of a key this plugin writes (`users:` and a decimal INT64),
    or None for any other key."""
    if not cache_key.startswith("users:"):
        return None
    text = cache_key[len("users:"):]
    if not _DECIMAL.fullmatch(text):
        return None
    user_id = int(text)
    return user_id if -(1 << 63) <= user_id < (1 << 63) else None


class UsersCache(Plugin):
    """The plugin: the cache event kinds it answers with a refresh."""

    def init(self):
        setting = config("refresh_on")
        if setting is None:
            setting = "miss"
        self.refresh_on = [kind.strip() for kind in setting.split(",") if kind.strip()]

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

    def on_cache_event(self, event):
        if event.kind not in self.refresh_on:
            return []
        user_id = user_id_of(event.key)
        if user_id is None:
            return []
        return [refresh("Users", [("UserId", Value_Int64(user_id))])]


WitWorld = register_plugin(UsersCache)

"""Caches each row of the `Users` table as a JSON object under `users:{UserId}`,
and refreshes a user's row when a cache event of one of the kinds in the
manifest's `refresh_on` setting (default `miss`; e.g. `miss,evicted`)
reports its key.

Two optional settings use the host's keyring (the plugin's grant must list
the key names):

- `seal_with = "<key name>"`: each row is sealed with that key, the Redis key
  as associated data, instead of stored as plain JSON.
- `email_index_with = "<key name>"`: a row whose `Email` is a string also sets
  `users:by-email:<keyed hash of the e-mail>` to its `UserId`, so the address
  never appears in a key.

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
    as_str,
    config,
    effect_delete,
    effect_set,
    key,
    key_value,
    keyed_hash,
    new_value,
    refresh,
    register_plugin,
    row_json_bytes,
    seal,
)

# What Rust's `str::trim` strips (Unicode White_Space): Python's `strip()`
# would also strip U+001C..U+001F, which Rust keeps.
_RUST_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
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


def setting(name):
    """A `[config]` setting, None when absent or empty."""
    return config(name) or None


class UsersCache(Plugin):
    """The plugin: the cache event kinds it answers with a refresh, and the
    keyring keys it seals rows and hashes e-mail addresses with."""

    def init(self):
        kinds = config("refresh_on")
        if kinds is None:
            kinds = "miss"
        stripped = (kind.strip(_RUST_WHITESPACE) for kind in kinds.split(","))
        self.refresh_on = [kind for kind in stripped if kind]
        self.seal_with = setting("seal_with")
        self.email_index_with = setting("email_index_with")

    def on_change(self, change):
        if change.table != "Users":
            return []
        user_id = as_i64(key_value(change, "UserId"))
        if user_id is None:
            raise Err("Users row without an INT64 UserId")
        row_key = key(["users", str(user_id)])
        if change.kind == ChangeKind.DELETE:
            return [effect_delete(row_key)]
        row = row_json_bytes(change)
        if self.seal_with is not None:
            row = seal(self.seal_with, row, row_key.encode())
        effects = [effect_set(row_key, row)]
        # The setting first, as the Rust twin does: no lookup when unset.
        if self.email_index_with is not None:
            email = as_str(new_value(change, "Email"))
            if email is not None:
                digest = keyed_hash(self.email_index_with, email.encode())
                effects.append(effect_set(key(["users", "by-email", digest]), str(user_id)))
        return effects

    def on_cache_event(self, event):
        if event.kind not in self.refresh_on:
            return []
        user_id = user_id_of(event.key)
        if user_id is None:
            return []
        return [refresh("Users", [("UserId", Value_Int64(user_id))])]


WitWorld = register_plugin(UsersCache)

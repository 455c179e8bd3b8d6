"""Write Redis Spanner cache plugins in Python.

A plugin is a WebAssembly component (world `cache-plugin` of
`wit/plugin@0.4.0`) built with componentize-py. The host hands it batches of
Spanner row changes and cache events; it answers with a plan of Redis
actions and with refresh requests.

This module is the Python counterpart of the Rust `redis-spanner-sdk`:

- `Plugin`: subclass it and override `init` and `on_change` (or
  `on_changes` for a whole batch), and `on_cache_event` (or
  `on_cache_events`); `register_plugin(cls)` turns the class into the
  `WitWorld` export that componentize-py looks for.
- `RowChange`: one change as plugins see it, with table and column names
  (`table`, `kind`, `keys`, `new_values`, `old_values`, `commit_micros`,
  `transaction_id`, `record_sequence`, `transaction_tag`). Contract 0.4.0
  sends a batch as JSON text (docs/BATCH-TEXT.md: each table and
  transaction once, values by position); `decode_batch` reads it with the
  C `json` module and turns it into `RowChange`s whose values are named
  only when read, and `on_changes` receives that list, so plugin code reads
  names as before.
- `key(parts)`: Redis keys with `:`, `\\`, `{` and `}` escaped, like the Rust `key`;
  `split_key(key)` takes one apart again, and `value_from_text(type, text)`
  turns a part back into a key column's value (the inverse of `to_text`).
- `to_json(value)`, `row_json(columns)`, `row_json_of(change)` and `dumps(obj)`
  (`row_json_bytes(change)` is `dumps(row_json_of(change)).encode()`, faster):
  row JSON that is byte for byte what the Rust SDK's `row_json().to_string()`
  gives (serde_json: members sorted by name, compact, floats like serde_json;
  a FLOAT32 as the shortest decimal that reads back as it, like Rust's `f32`
  Display).
- `effect_set` / `effect_delete` / `effect_expire` build effects (what
  `on_change` returns); `set` / `delete` / `expire` build actions tagged with
  a change index (what `on_changes` returns).
- `refresh(table, keys)` builds the cache effect that re-reads a row (what
  `on_cache_event` returns); `field(event, name)` reads a stream entry field.
- `seal` and `keyed_hash`: encryption and opaque names with the host's
  keyring, for the key names the plugin's grant lists.
- `log`, `trace` ... `error`, and `config(name)`: the host's functions.

Outside WebAssembly (plain CPython, e.g. unit tests) the generated bindings
are missing; the module then uses look-alike data classes, `log` writes to
standard error, `config` returns None, and `seal` and `keyed_hash` raise
`Err`, as the Rust SDK does natively.

Errors: raise `Err("message")` from `init`, `on_change`, `on_changes`,
`on_cache_event` or `on_cache_events` to return the WIT `result`'s error;
the default `on_changes` prefixes it with `change N (table T): ` and the
default `on_cache_events` with `event N (key K): `, like the Rust SDK. Any
other exception is turned into an error too (componentize-py would
otherwise trap, and the traceback would be lost).
"""

import base64
import itertools
import json
import math
import re
import struct
import sys
import traceback
from dataclasses import dataclass
from enum import Enum
from typing import List, Optional, Tuple

#: Version of the WIT package (`redis-spanner:plugin`) this SDK implements.
API_VERSION = "0.4.0"

_U32_MAX = (1 << 32) - 1
_U64_MAX = (1 << 64) - 1
_I64_MIN = -(1 << 63)

try:  # The bindings componentize-py generates exist only inside the component.
    import wit_world  # noqa: F401
except ImportError:
    IN_WASM = False
else:
    IN_WASM = True

if IN_WASM:
    try:
        from componentize_py_types import Err
        from wit_world.imports import crypto as _crypto
        from wit_world.imports import host as _host
        from wit_world.imports.cache import (
            CacheAction,
            CacheEffect_Refresh,
            CacheEvent,
            EventSource,
            Refresh,
        )
        from wit_world.imports.types import (
            Action,
            ChangeKind,
            Column,
            Effect_Delete,
            Effect_Expire,
            Effect_Set,
            Expiry,
            Value_Bool,
            Value_Bytes,
            Value_Date,
            Value_Float32,
            Value_Float64,
            Value_Int64,
            Value_Json,
            Value_Null,
            Value_Numeric,
            Value_String,
            Value_Timestamp,
            Write,
        )
    except ImportError as missing:
        raise ImportError(
            f"redis_spanner_sdk implements redis-spanner:plugin@{API_VERSION}: build the "
            f"plugin with wit/plugin@{API_VERSION}, world cache-plugin ({missing})"
        ) from missing

    LogLevel = _host.LogLevel
else:  # Plain CPython: look-alikes with the generated names and shapes.
    _crypto = None
    _host = None

    @dataclass(frozen=True)
    class Err(Exception):
        """The error case of a WIT `result` (componentize_py_types.Err)."""

        value: object

    @dataclass
    class Value_Null:
        pass

    @dataclass
    class Value_Bool:
        value: bool

    @dataclass
    class Value_Int64:
        value: int

    @dataclass
    class Value_Float32:
        value: float

    @dataclass
    class Value_Float64:
        value: float

    @dataclass
    class Value_String:
        value: str

    @dataclass
    class Value_Bytes:
        value: bytes

    @dataclass
    class Value_Timestamp:
        value: str

    @dataclass
    class Value_Date:
        value: str

    @dataclass
    class Value_Numeric:
        value: str

    @dataclass
    class Value_Json:
        value: str

    @dataclass
    class Column:
        name: str
        value: object

    class ChangeKind(Enum):
        INSERT = 0
        UPDATE = 1
        DELETE = 2
        SNAPSHOT = 3

    @dataclass
    class Write:
        key: str
        value: bytes
        ttl_ms: Optional[int]

    @dataclass
    class Expiry:
        key: str
        ttl_ms: int

    @dataclass
    class Effect_Set:
        value: Write

    @dataclass
    class Effect_Delete:
        value: str

    @dataclass
    class Effect_Expire:
        value: Expiry

    @dataclass
    class Action:
        change: int
        effect: object

    class EventSource(Enum):
        APPLICATION = 0
        KEYSPACE = 1

    @dataclass
    class CacheEvent:
        source: EventSource
        kind: str
        key: str
        fields: List[Tuple[str, str]]
        id: str

    @dataclass
    class Refresh:
        table: str
        keys: List[Column]

    @dataclass
    class CacheEffect_Refresh:
        value: Refresh

    @dataclass
    class CacheAction:
        event: int
        effect: object

    class LogLevel(Enum):
        TRACE = 0
        DEBUG = 1
        INFO = 2
        WARN = 3
        ERROR = 4


_VALUE_TYPES = (
    Value_Null,
    Value_Bool,
    Value_Int64,
    Value_Float32,
    Value_Float64,
    Value_String,
    Value_Bytes,
    Value_Timestamp,
    Value_Date,
    Value_Numeric,
    Value_Json,
)


# --------------------------------------------------------------------------
# Row changes


class RowChange:
    """One row's change as plugins see it: table, kind, named key columns
    and values, and its transaction's fields.

    (Not a dataclass since contract 0.4.0: `dataclasses.replace` and
    `asdict` do not apply; build a new `RowChange` from the fields.)

    `keys`, `new_values` and `old_values` are lists of `Column(name, value)`;
    `record_sequence` is the record's order within its transaction (an int).
    Build one directly (positional or keyword arguments, in this order) to
    test a plugin's `on_change` or `on_changes`.

    A change `decode_batch` made keeps its values as the batch text has them
    and names them only when `keys`, `new_values` or `old_values` is first
    read; `key_value`, `new_value`, `old_value` and `row_json_of` read the
    text directly, so a plugin pays only for the values it looks at.
    """

    __slots__ = (
        "table",
        "kind",
        "commit_micros",
        "transaction_id",
        "record_sequence",
        "transaction_tag",
        "_keys",
        "_new_values",
        "_old_values",
        "_wire",
        # Plugins may set attributes of their own, as on the dataclass this
        # class once was.
        "__dict__",
    )

    __match_args__ = (
        "table",
        "kind",
        "keys",
        "new_values",
        "old_values",
        "commit_micros",
        "transaction_id",
        "record_sequence",
        "transaction_tag",
    )

    def __init__(
        self,
        table: str,
        kind,
        keys: List[Column],
        new_values: List[Column],
        old_values: List[Column],
        commit_micros: int,
        transaction_id: str,
        record_sequence: int,
        transaction_tag: str,
    ):
        self.table = table
        self.kind = kind
        self._keys = keys
        self._new_values = new_values
        self._old_values = old_values
        self.commit_micros = commit_micros
        self.transaction_id = transaction_id
        self.record_sequence = record_sequence
        self.transaction_tag = transaction_tag
        self._wire = None

    @classmethod
    def _from_text(cls, table, kind, keys, new_values, old_values, transaction, sequence):
        """A change whose values stay as the batch text has them (see
        `decode_batch`); `table` is the batch's `[name, keys, columns]`."""
        change = cls.__new__(cls)
        change.table = table[0]
        change.kind = kind
        change._keys = change._new_values = change._old_values = None
        change.commit_micros = transaction[2]
        change.transaction_id = transaction[0]
        change.record_sequence = sequence
        change.transaction_tag = transaction[1]
        change._wire = (table, keys, new_values, old_values)
        return change

    @property
    def keys(self) -> List[Column]:
        """Primary key columns, in key order."""
        if self._keys is None:
            names = self._wire[0][1]
            self._keys = [Column(name, _text_value(raw)) for name, raw in zip(names, self._wire[1])]
        return self._keys

    @keys.setter
    def keys(self, columns: List[Column]) -> None:
        self._keys = columns

    @property
    def new_values(self) -> List[Column]:
        """Non-key column values after the change (empty for a delete)."""
        if self._new_values is None:
            self._new_values = _named(self._wire[2], self._wire[0])
        return self._new_values

    @new_values.setter
    def new_values(self, columns: List[Column]) -> None:
        self._new_values = columns

    @property
    def old_values(self) -> List[Column]:
        """Non-key column values before the change, when the stream's value
        capture type records them (empty otherwise)."""
        if self._old_values is None:
            self._old_values = _named(self._wire[3], self._wire[0])
        return self._old_values

    @old_values.setter
    def old_values(self, columns: List[Column]) -> None:
        self._old_values = columns

    def _fields(self) -> tuple:
        return (
            self.table,
            self.kind,
            self.keys,
            self.new_values,
            self.old_values,
            self.commit_micros,
            self.transaction_id,
            self.record_sequence,
            self.transaction_tag,
        )

    def __eq__(self, other) -> bool:
        if not isinstance(other, RowChange):
            return NotImplemented
        return self._fields() == other._fields()

    __hash__ = None

    def __repr__(self) -> str:
        names = ("table", "kind", "keys", "new_values", "old_values", "commit_micros",
                 "transaction_id", "record_sequence", "transaction_tag")
        fields = ", ".join(f"{name}={value!r}" for name, value in zip(names, self._fields()))
        return f"RowChange({fields})"


# The change kinds by their index in the batch text (the WIT enum's order).
_KINDS = {0: ChangeKind.INSERT, 1: ChangeKind.UPDATE, 2: ChangeKind.DELETE, 3: ChangeKind.SNAPSHOT}


def decode_batch(batch) -> List[RowChange]:
    """The changes of a batch as `RowChange`s, in batch order, so that
    change N of the list is the change actions name with index N.

    `batch` is what contract 0.4.0 hands `on-changes`: the UTF-8 JSON text
    of the compact batch (docs/BATCH-TEXT.md), read with the standard
    library's C JSON reader. Each table's and transaction's fields are
    shared by its changes, not copied; values are turned into `Value_*`
    objects only when read. Raises `Err` when the text is not such a batch
    or a change refers to a table, transaction or kind it does not describe.
    """
    try:
        tables, transactions, changes = json.loads(batch)
        # Exactly three parts each (unpacking checks it), the micros as text.
        transactions = [
            (tx_id, tag, int(micros) if type(micros) is str else _not_micros(micros))
            for tx_id, tag, micros in transactions
        ]
    except (ValueError, TypeError, IndexError) as exc:
        raise Err(f"the batch is not the JSON text of contract {API_VERSION}: {exc}") from None
    decoded = []
    append = decoded.append
    from_text = RowChange._from_text
    table_count = len(tables)
    transaction_count = len(transactions)
    for index, wire in enumerate(changes):
        try:
            table, kind, keys, new_values, old_values, transaction, sequence = wire
            # Checked inline (a bool is an int, and would pass the lookup).
            if type(kind) is not int:
                raise KeyError(kind)
            if type(sequence) is not int or not 0 <= sequence <= _U32_MAX:
                raise ValueError(f"record sequence {sequence!r} is not a number below 2^32")
            if len(new_values) & 1 or len(old_values) & 1:
                raise ValueError("cells of odd length: a column without its value")
            # Checked inline (a negative index would count from the end).
            if type(table) is not int or not 0 <= table < table_count:
                _entry(tables, table, "table")
            if type(transaction) is not int or not 0 <= transaction < transaction_count:
                _entry(transactions, transaction, "transaction")
            table = tables[table]
            if len(keys) != len(table[1]):
                _keys_of(keys, table)
            append(
                from_text(
                    table,
                    _KINDS[kind],
                    keys,
                    new_values,
                    old_values,
                    transactions[transaction],
                    sequence,
                )
            )
        except KeyError:
            raise Err(f"change {index}: kind {kind!r} is not a change kind") from None
        except (IndexError, ValueError, TypeError) as exc:
            raise Err(f"change {index}: {exc}") from None
    return decoded


def _not_micros(micros):
    """Refuses commit micros that are not the decimal text the host writes."""
    raise ValueError(f"commit micros {micros!r} is not a decimal text")


def _entry(entries, index, what):
    """`entries[index]`, refusing what is not an index into them (a
    negative number would count from the end)."""
    if type(index) is not int or not 0 <= index < len(entries):
        raise IndexError(f"{what} {index!r} is not in the batch's {len(entries)} {what}s")
    return entries[index]


def _keys_of(keys, table):
    if len(keys) != len(table[1]):
        raise ValueError(f"{len(keys)} key values for the {len(table[1])} key columns of table {table[0]}")
    return keys


def _named(cells, table) -> List[Column]:
    """A flat `[column, value, column, value, ...]` list of the batch text as
    columns named after the table's columns."""
    names = table[2]
    pairs = iter(cells)
    try:
        return [Column(names[_at(column)], _text_value(raw)) for column, raw in zip(pairs, pairs)]
    except (IndexError, TypeError):
        bad = next((c for c in cells[::2] if type(c) is not int or not 0 <= c < len(names)), None)
        if bad is None:
            raise
        raise Err(f"column {bad!r} is not in table {table[0]}'s {len(names)} columns") from None


def _at(column):
    """`column` as an index into a table's columns; a negative one would
    count from the end."""
    if column < 0:
        raise IndexError(column)
    return column


def _cell(cells, table, name: str):
    """The raw value of column `name` among flat cells, or `_MISSING`."""
    try:
        column = table[2].index(name)
        return cells[2 * cells[::2].index(column) + 1]
    except ValueError:
        return _MISSING


_MISSING = object()

# Value classes of the batch text's type tags (docs/BATCH-TEXT.md).
_TEXT_VALUES = {
    "s": Value_String,
    "i": lambda text: Value_Int64(int(text)),
    "f": lambda text: Value_Float64(float(text)),
    "g": lambda text: Value_Float32(float(text)),
    "b": lambda text: Value_Bytes(base64.b64decode(text, validate=True)),
    "t": Value_Timestamp,
    "d": Value_Date,
    "n": Value_Numeric,
    "j": Value_Json,
}


def _text_value(raw):
    """A value of the batch text (`null`, a bool, or a type tag and text)
    as a `Value_*`."""
    if type(raw) is str:
        # The usual types first, without a table lookup.
        tag = raw[:1]
        if tag == "s":
            return Value_String(raw[1:])
        if tag == "i":
            try:
                return Value_Int64(int(raw[1:]))
            except ValueError:
                pass
    elif raw is None:
        return Value_Null()
    elif raw is True or raw is False:
        return Value_Bool(raw)
    try:
        return _TEXT_VALUES[raw[0]](raw[1:])
    except (KeyError, IndexError, TypeError, ValueError):
        raise Err(f"{raw!r} is not a value of the batch text") from None


# --------------------------------------------------------------------------
# Host functions


def log(level, message: str) -> None:
    """Writes `message` to the host's log at `level` (a `LogLevel`)."""
    if _host is not None:
        _host.log(level, message)
    else:
        print(f"[{level.name.title()}] {message}", file=sys.stderr)


def trace(message: str) -> None:
    """Writes `message` to the host's log at `LogLevel.TRACE`."""
    log(LogLevel.TRACE, message)


def debug(message: str) -> None:
    """Writes `message` to the host's log at `LogLevel.DEBUG`."""
    log(LogLevel.DEBUG, message)


def info(message: str) -> None:
    """Writes `message` to the host's log at `LogLevel.INFO`."""
    log(LogLevel.INFO, message)


def warn(message: str) -> None:
    """Writes `message` to the host's log at `LogLevel.WARN`."""
    log(LogLevel.WARN, message)


def error(message: str) -> None:
    """Writes `message` to the host's log at `LogLevel.ERROR`."""
    log(LogLevel.ERROR, message)


def config(name: str) -> Optional[str]:
    """The value of `name` in the manifest's `[config]` table, or None.

    Outside WebAssembly there is no manifest and every name gives None.
    """
    if _host is not None:
        return _host.config(name)
    return None


# --------------------------------------------------------------------------
# Keys


_KEY_ESCAPES = str.maketrans({"\\": "\\\\", ":": "\\:", "{": "\\(", "}": "\\)"})


def key(parts) -> str:
    """Joins `parts` with `:`, escaping `\\` as `\\\\`, `:` as `\\:`, `{` as
    `\\(` and `}` as `\\)` in each part, exactly like the Rust SDK's `key`:
    different parts give different keys, and no part can put a Redis
    Cluster hash tag in the key (use `key_with_tag` for that).

    Parts are strings; ints are accepted and written in decimal.
    """
    return ":".join(map(_escaped_part, parts))


def _escaped_part(part) -> str:
    """A key part escaped: a str as its text, an int in decimal; anything
    else is refused."""
    if type(part) is not str:
        if isinstance(part, int) and not isinstance(part, bool):
            part = str(part)
        elif not isinstance(part, str):
            raise TypeError(f"key part must be str or int, not {type(part).__name__}")
    return part.translate(_KEY_ESCAPES) if _KEY_SPECIAL.search(part) else part


def key_with_tag(parts, tag: int) -> str:
    """`key`, with part number `tag` (from 0) as the key's Redis Cluster hash
    tag: escaped like any part, then put in braces, exactly like the Rust
    SDK's `key_with_tag`. An empty tag part, or a `tag` past the last part,
    gives the plain key: `key_with_tag(["orders", 42, 7], 1)` is
    `orders:{42}:7`.
    """
    if isinstance(tag, bool) or not isinstance(tag, int):
        raise TypeError(f"key tag must be an int index, not {type(tag).__name__}")
    out = []
    for i, part in enumerate(parts):
        escaped = _escaped_part(part)
        out.append("{" + escaped + "}" if i == tag and escaped else escaped)
    return ":".join(out)


_KEY_SPECIAL = re.compile(r"[:\\{}]")


_KEY_UNESCAPES = {"\\": "\\", ":": ":", "(": "{", ")": "}"}


def split_key(key: str) -> Optional[List[str]]:
    """The parts of a key `key` made, unescaped, exactly like the Rust SDK's
    `split_key`: `split_key(key(parts)) == parts` (one empty part for the
    empty key), e.g. to read the row's key back out of a missed key.

    None for a key `key` does not make: a `\\` at its end or before a
    character other than `\\`, `:`, `(` and `)`, or an unescaped `{` or `}`
    (a hash tag of `key_with_tag`: take it apart yourself).
    """
    parts = [[]]
    chars = iter(key)
    for c in chars:
        if c == ":":
            parts.append([])
            continue
        if c in "{}":
            return None
        if c == "\\":
            c = _KEY_UNESCAPES.get(next(chars, ""))
            if c is None:
                return None
        parts[-1].append(c)
    return ["".join(part) for part in parts]


# --------------------------------------------------------------------------
# Column lookup


def _find(columns, name: str):
    for column in columns:
        if column.name == name:
            return column.value
    return None


def key_value(change, name: str):
    """The value of primary key column `name`, or None if there is none."""
    wire = getattr(change, "_wire", None)
    if wire is not None and change._keys is None:
        try:
            at = wire[0][1].index(name)
        except ValueError:
            return None
        return _text_value(wire[1][at])
    return _find(change.keys, name)


def new_value(change, name: str):
    """The value of non-key column `name` after the change, or None."""
    wire = getattr(change, "_wire", None)
    if wire is not None and change._new_values is None:
        raw = _cell(wire[2], wire[0], name)
        return None if raw is _MISSING else _text_value(raw)
    return _find(change.new_values, name)


def old_value(change, name: str):
    """The value of non-key column `name` before the change, or None."""
    wire = getattr(change, "_wire", None)
    if wire is not None and change._old_values is None:
        raw = _cell(wire[3], wire[0], name)
        return None if raw is _MISSING else _text_value(raw)
    return _find(change.old_values, name)


def as_i64(value) -> Optional[int]:
    """The int of an INT64 value; None for any other type, NULL or None."""
    return value.value if isinstance(value, Value_Int64) else None


def as_f32(value) -> Optional[float]:
    """The float of a FLOAT32 value (a float32 widened exactly to a Python
    float); None for any other type, NULL or None."""
    return value.value if isinstance(value, Value_Float32) else None


def as_f64(value) -> Optional[float]:
    """The float of a FLOAT64 value, or of a FLOAT32 value widened exactly;
    None otherwise."""
    return value.value if isinstance(value, (Value_Float64, Value_Float32)) else None


def as_bool(value) -> Optional[bool]:
    """The bool of a BOOL value; None otherwise."""
    return value.value if isinstance(value, Value_Bool) else None


def as_str(value) -> Optional[str]:
    """The text of a STRING value (not TIMESTAMP, DATE, ...); None otherwise."""
    return value.value if isinstance(value, Value_String) else None


def as_bytes(value) -> Optional[bytes]:
    """The bytes of a BYTES value; None otherwise."""
    return bytes(value.value) if isinstance(value, Value_Bytes) else None


def as_timestamp(value) -> Optional[str]:
    """The RFC 3339 text of a TIMESTAMP value; None otherwise."""
    return value.value if isinstance(value, Value_Timestamp) else None


def as_date(value) -> Optional[str]:
    """The YYYY-MM-DD text of a DATE value; None otherwise."""
    return value.value if isinstance(value, Value_Date) else None


def as_numeric(value) -> Optional[str]:
    """The decimal text of a NUMERIC value; None otherwise."""
    return value.value if isinstance(value, Value_Numeric) else None


def as_json_text(value) -> Optional[str]:
    """The text of a JSON or ARRAY value; None otherwise."""
    return value.value if isinstance(value, Value_Json) else None


def to_text(value) -> Optional[str]:
    """Any value as plain text, like the Rust SDK's `Value::to_text`: text
    types as their text, numbers and booleans in JSON notation, bytes as
    standard base64, None for NULL."""
    if value is None or isinstance(value, Value_Null):
        return None
    if isinstance(value, (Value_String, Value_Timestamp, Value_Date, Value_Numeric, Value_Json)):
        return value.value
    return dumps(to_json(value)).strip('"')


_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_FLOAT_WORDS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_TEXT_TYPES = {"STRING": Value_String, "DATE": Value_Date, "TIMESTAMP": Value_Timestamp, "NUMERIC": Value_Numeric}


def value_from_text(spanner_type: str, text: str):
    """The value of a key column of type `spanner_type` ("INT64", "STRING",
    "BYTES", "DATE", "TIMESTAMP", "NUMERIC", "BOOL" or "FLOAT64") whose
    `to_text` is `text`, exactly like the Rust SDK's `Value::from_text`: the
    inverse of `to_text` for key columns, e.g. to turn the parts of a missed
    key (`split_key`) back into the row's key.

    None when `text` is not such a value: an INT64 must be written as
    `to_text` writes it (decimal, no `+`, no leading zero, within 64 bits),
    a BOOL as `true` or `false`, a FLOAT64 as a finite JSON number or `NaN`,
    `Infinity`, `-Infinity`, BYTES as standard base64 with padding. STRING,
    DATE, TIMESTAMP and NUMERIC take any text, in their own types. Any other
    type gives None.

        value_from_text("INT64", "-42") == Value_Int64(-42)
    """
    if spanner_type in _TEXT_TYPES:
        return _TEXT_TYPES[spanner_type](text)
    if spanner_type == "INT64":
        try:
            number = int(text)
        except ValueError:
            return None
        fits = _I64_MIN <= number < -_I64_MIN
        return Value_Int64(number) if fits and str(number) == text else None
    if spanner_type == "BOOL":
        return Value_Bool(text == "true") if text in ("true", "false") else None
    if spanner_type == "FLOAT64":
        if text in _FLOAT_WORDS:
            return Value_Float64(_FLOAT_WORDS[text])
        number = float(text) if _JSON_NUMBER.fullmatch(text) else math.inf
        return Value_Float64(number) if math.isfinite(number) else None
    if spanner_type == "BYTES":
        try:
            data = base64.b64decode(text, validate=True)
        except ValueError:
            return None
        return Value_Bytes(data) if base64.b64encode(data).decode("ascii") == text else None
    return None


def is_null(value) -> bool:
    """True for SQL NULL."""
    return isinstance(value, Value_Null)


# --------------------------------------------------------------------------
# JSON conversion (same results as serde_json in the Rust SDK)


class _NotSerdeJson(ValueError):
    """The text is JSON serde_json would reject."""


def _serde_number(text: str):
    """Parses a JSON number literal the way serde_json 1.x does with the
    `float_roundtrip` feature the SDK uses: an int when it is an integer
    fitting u64 (non-negative) or i64 (negative, except -0), else the
    nearest double (Python's `float` rounds correctly, as serde_json does
    then); raises _NotSerdeJson when the double would be infinite, where
    serde_json reports the number out of range."""
    if not any(c in text for c in ".eE"):
        value = int(text)
        if text.startswith("-"):
            if value != 0 and value >= _I64_MIN:
                return value
        elif value <= _U64_MAX:
            return value
    number = float(text)
    if math.isinf(number):
        raise _NotSerdeJson("number out of range")
    return number


def _reject_constant(name):
    raise _NotSerdeJson(f"not JSON: {name}")


# serde_json's recursion limit: 128 levels, of which 127 can be containers.
_MAX_DEPTH = 127
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)", re.S)


def _check_serde(text: str) -> None:
    """Rejects valid JSON that serde_json would not accept: unpaired UTF-16
    surrogates in \\u escapes, and nesting deeper than its recursion limit.
    Scans the text, so members later replaced by a duplicate name count too,
    as they do for serde_json."""
    depth = 0
    for token in _TOKENS.finditer(text):
        t = token.group()
        if t[0] == '"':
            if "\\u" in t:
                _check_surrogates(t)
        elif t in "[{":
            depth += 1
            if depth > _MAX_DEPTH:
                raise _NotSerdeJson("recursion limit exceeded")
        else:
            depth -= 1


def _check_surrogates(s: str) -> None:
    high_end = None  # end of a leading surrogate escape awaiting its pair
    for escape in _ESCAPE.finditer(s):
        hex_digits = escape.group(1)
        unit = int(hex_digits, 16) if hex_digits else None
        if high_end is not None:
            if escape.start() != high_end or unit is None or not 0xDC00 <= unit <= 0xDFFF:
                raise _NotSerdeJson("lone leading surrogate")
            high_end = None
        elif unit is not None and 0xD800 <= unit <= 0xDBFF:
            high_end = escape.end()
        elif unit is not None and 0xDC00 <= unit <= 0xDFFF:
            raise _NotSerdeJson("lone trailing surrogate")
    if high_end is not None:
        raise _NotSerdeJson("lone leading surrogate")


def parse_json(text: str):
    """Parses `text` like `serde_json::from_str::<serde_json::Value>`.

    Returns a JSON-able Python object (dict, list, str, int, float, bool,
    None); raises ValueError where serde_json would fail (including NaN and
    Infinity literals, out-of-range numbers, lone surrogates, nesting deeper
    than 127).
    """
    try:
        obj = json.loads(
            text,
            parse_int=_serde_number,
            parse_float=_serde_number,
            parse_constant=_reject_constant,
        )
    except RecursionError as e:
        raise _NotSerdeJson("recursion limit exceeded") from e
    _check_serde(text)
    return obj


def _float_to_json(f: float):
    if math.isfinite(f):
        return f
    if math.isnan(f):
        return "NaN"
    return "Infinity" if f > 0 else "-Infinity"


def _to_f32(f: float) -> float:
    """`f` rounded to the nearest float32 (infinite beyond its range)."""
    try:
        return struct.unpack("<f", struct.pack("<f", f))[0]
    except OverflowError:
        return math.copysign(math.inf, f)


def _float32_to_json(f: float):
    """A float32 as the Rust SDK writes it: the shortest decimal that reads
    back as it (Rust's `f32` Display: 0.1, not 0.10000000149011612), as a
    float that `dumps` prints like serde_json prints an f64; NaN and the
    infinities as strings, like FLOAT64."""
    f = _to_f32(f)
    if not math.isfinite(f):
        return _float_to_json(f)
    if f == 0.0:
        return f
    digits, exponent = _f32_shortest(abs(f))
    return math.copysign(float(f"{digits}e{exponent}"), f)


_POW10 = tuple(10**i for i in range(64))


def _f32_shortest(a: float) -> Tuple[int, int]:
    """(digits, exponent): the decimal digits * 10**exponent with the fewest
    digits that reads back as the float32 `a` (finite, > 0); of the two such
    decimals next to `a`, the closer, and the upper on a tie. These are the
    digits Rust's `f32` Display prints (core::num::flt2dec, shortest mode),
    found with exact integer arithmetic.
    """
    bits = struct.unpack("<I", struct.pack("<f", a))[0]
    field, fraction = bits >> 23, bits & 0x7FFFFF
    mantissa = fraction | 0x800000 if field else fraction
    shift = (field or 1) - 152
    # In units of 2**shift (a quarter of the float's spacing), `a` is
    # `value`, and the reals that read back as `a` lie between `low` and
    # `high`, both included when the mantissa is even (a tie reads as the
    # even neighbour). Like Rust, a normal power of two has its lower
    # neighbour at half the distance of the upper one.
    value = mantissa << 2
    low = value - (1 if field and not fraction else 2)
    high = value + 2
    inclusive = not mantissa & 1
    # 10**exponent is at most a tenth of the interval's width, so the
    # interval holds a multiple of it; then go up while it holds a multiple
    # of the next power.
    exponent = math.floor(math.log10(math.ldexp(high - low, shift))) - 1
    while _holds_multiple(low, high, inclusive, shift, exponent + 1):
        exponent += 1
    ten, two = _scales(shift, exponent)
    scaled = value * two
    down = scaled // ten
    below = down * ten
    if below == scaled:
        return down, exponent
    above = below + ten
    if not _within(below, low * two, high * two, inclusive):
        return down + 1, exponent
    if _within(above, low * two, high * two, inclusive) and 2 * scaled >= below + above:
        return down + 1, exponent
    return down, exponent


def _scales(shift: int, exponent: int) -> Tuple[int, int]:
    """Integers (ten, two) such that comparing n * 10**exponent with
    x * 2**shift is comparing n * ten with x * two."""
    ten = _POW10[exponent] if exponent > 0 else 1
    two = _POW10[-exponent] if exponent < 0 else 1
    if shift < 0:
        ten <<= -shift
    else:
        two <<= shift
    return ten, two


def _within(x: int, low: int, high: int, inclusive: bool) -> bool:
    """True when `x` lies between `low` and `high` (ends included or not)."""
    if inclusive:
        return low <= x <= high
    return low < x < high


def _holds_multiple(low: int, high: int, inclusive: bool, shift: int, exponent: int) -> bool:
    """True when a multiple of 10**exponent lies between low * 2**shift and
    high * 2**shift (ends included or not)."""
    ten, two = _scales(shift, exponent)
    low, high = low * two, high * two
    first = -(-low // ten) * ten  # the first multiple at or above low
    if first == low and not inclusive:
        first += ten
    return _within(first, low, high, inclusive)


def to_json(value):
    """Converts a WIT `value` to a JSON-able Python object, like the Rust
    SDK's `Value::to_json`.

    NULL -> None, BOOL -> bool, INT64 -> int, FLOAT64 -> float ("NaN",
    "Infinity", "-Infinity" as strings), FLOAT32 -> the float of the
    shortest decimal that reads back as it (so `dumps` writes 0.1, not
    0.10000000149011612; non-finite ones as strings too),
    STRING/TIMESTAMP/DATE/NUMERIC -> str, BYTES -> standard base64 str with
    padding, JSON -> the parsed document (the text itself when it does not
    parse).
    """
    for cls in type(value).__mro__:
        convert = _TO_JSON.get(cls)
        if convert is not None:
            return convert(value)
    raise TypeError(f"not a WIT value: {value!r}")


def _payload(value):
    return value.value


def _json_or_text(value):
    try:
        return parse_json(value.value)
    except ValueError:
        return value.value


# `to_json` by the value's class (or the WIT value class it derives from).
_TO_JSON = {
    Value_Null: lambda value: None,
    Value_Bool: lambda value: bool(value.value),
    Value_Int64: lambda value: int(value.value),
    Value_Float64: lambda value: _float_to_json(float(value.value)),
    Value_Float32: lambda value: _float32_to_json(float(value.value)),
    Value_String: _payload,
    Value_Timestamp: _payload,
    Value_Date: _payload,
    Value_Numeric: _payload,
    Value_Bytes: lambda value: base64.b64encode(bytes(value.value)).decode("ascii"),
    Value_Json: _json_or_text,
}


def row_json(columns, int64_as_string: bool = False) -> dict:
    """A dict with one member per column, valued by `to_json`; a later column
    with a repeated name wins. `dumps` sorts the members by name.

    With `int64_as_string`, INT64 columns are decimal strings, like the Rust
    SDK's `row_json_int64_as_string` (for readers using JavaScript's
    `JSON.parse`, which rounds integers beyond 2**53)."""
    obj = {}
    for column in columns:
        if int64_as_string and isinstance(column.value, Value_Int64):
            obj[column.name] = str(column.value.value)
        else:
            obj[column.name] = to_json(column.value)
    return obj


def row_json_of(change, int64_as_string: bool = False) -> dict:
    """The change's key columns and new values as one JSON object, like the
    Rust SDK's `RowChange::row_json` (or `row_json_int64_as_string`)."""
    wire = getattr(change, "_wire", None)
    if wire is None or change._keys is not None or change._new_values is not None:
        return row_json(itertools.chain(change.keys, change.new_values), int64_as_string)
    return _text_row(wire, int64_as_string)[0]


def row_json_bytes(change, int64_as_string: bool = False) -> bytes:
    """The UTF-8 bytes of `dumps(row_json_of(change))`, like the Rust SDK's
    `RowChange::row_json_bytes`: what a plugin usually stores. A change
    still reading the batch text whose values are strings, INT64s, BOOLs
    and NULLs under distinct names (the usual row) is written straight from
    the values' text, without a dict or an int per value; otherwise
    `dumps`' check for floats is skipped when none of its values is a float
    or a JSON document."""
    wire = getattr(change, "_wire", None)
    if wire is None or change._keys is not None or change._new_values is not None:
        return dumps(row_json_of(change, int64_as_string)).encode()
    text = _flat_row_text(wire, int64_as_string)
    if text is not None:
        return text.encode()
    row, plain = _text_row(wire, int64_as_string)
    return ("".join(_plain_encode(row, 0)) if plain else dumps(row)).encode()


# The member order of the last row `_flat_row_text` wrote: its table (the
# very object the batch text was read into), its cells' column indexes, and
# for each member in name order its quoted name and where its value is in
# the change's keys followed by its cells' values. The changes of a batch
# mostly share one table and one column order, so the order is made once.
_ROW_ORDER = [None, None, None]
# Quoted member names, `"Name":` by name; emptied when it grows past
# `_QUOTED_NAMES_MAX` (names come from schemas, so it rarely does).
_QUOTED_NAMES = {}
_QUOTED_NAMES_MAX = 4096


def _canonical_int(digits: str) -> bool:
    """Whether `digits` is an INT64's text exactly as Python writes the int
    it reads: ASCII digits after an optional `-`, no leading zero (`-0`,
    `007`, `+7` or `1_000` read as other texts), at most 19 of them (an
    INT64 has no more; `int` refuses very long texts)."""
    if digits[:1] == "-":
        digits = digits[1:]
        if digits == "0":
            return False
    return (
        len(digits) <= 19
        and digits.isdecimal()
        and digits.isascii()
        and (digits[:1] != "0" or digits == "0")
    )


_quote = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.encode_basestring


def _flat_row_text(wire, int64_as_string: bool):
    """`row_json_bytes`' text of a change still reading the batch text, made
    from the values' own text without a dict or an int per value, when every
    value is a string-like type, an INT64 in canonical decimal, a BOOL or
    NULL; None otherwise (floats, JSON, anything unusual or malformed), for
    the general path to write or to report."""
    table, keys, cells, _ = wire
    try:
        columns = cells[0::2]
        order = _ROW_ORDER
        if order[0] is table and order[1] == columns:
            members = order[2]
        else:
            members = _member_order(table, columns)
            if members is None:
                return None
            order[0], order[1], order[2] = table, columns, members
        values = keys + cells[1::2]
        out = []
        append = out.append
        for name, at in members:
            raw = values[at]
            if type(raw) is str:
                tag = raw[:1]
                if tag == "i":
                    digits = raw[1:]
                    if not _canonical_int(digits):
                        return None
                    append(name + ('"' + digits + '"' if int64_as_string else digits))
                elif tag in _TEXT_TAGS:
                    append(name + _quote(raw[1:]))
                else:
                    return None
            elif raw is None:
                append(name + "null")
            elif raw is True:
                append(name + "true")
            elif raw is False:
                append(name + "false")
            else:
                return None
        return "{" + ",".join(out) + "}"
    except (TypeError, IndexError):
        # Parts of another shape (keys or cells that are no lists): the
        # general path reports them.
        return None


def _member_order(table, columns):
    """The members of a row of `table` with these cells' `columns`, in name
    order, each as its quoted name and its value's place in the keys
    followed by the cells' values (a later column of a repeated name
    winning); None when a cell's column is not in its table (the general
    path reports it) or a name repeats (the general path reads every value,
    the ones a later column hides too). `decode_batch` has checked the key
    count and that the cells pair up."""
    try:
        key_names = table[1]
        names = table[2]
        place = {}
        for at, name in enumerate(key_names):
            place[name] = at
        for at, column in enumerate(columns, len(key_names)):
            if type(column) is not int or not 0 <= column < len(names):
                return None
            place[names[column]] = at
        if len(place) < len(key_names) + len(columns):
            return None
        if len(_QUOTED_NAMES) > _QUOTED_NAMES_MAX:
            _QUOTED_NAMES.clear()
        members = []
        for name in sorted(place):
            quoted = _QUOTED_NAMES.get(name)
            if quoted is None:
                quoted = _QUOTED_NAMES[name] = _quote(name) + ":"
            members.append((quoted, place[name]))
        return members
    except (IndexError, TypeError):
        return None


def _text_row(wire, int64_as_string: bool):
    """`row_json_of` of a change still reading the batch text, and whether
    every value is a str, int, bool or None (what `_plain` would find)."""
    table, keys, cells, _ = wire
    convert = _text_json_int64_as_string if int64_as_string else _text_json
    # The usual types inline: a call per value is most of the cost.
    inline = _TEXT_TAGS if int64_as_string else _TEXT_OR_INT_TAGS
    plain = True
    obj = {}
    for name, raw in zip(table[1], keys):
        if type(raw) is str and raw[:1] in inline:
            obj[name] = _inline_int(raw) if raw[:1] == "i" else raw[1:]
        elif raw is None or raw is True or raw is False:
            obj[name] = raw
        else:
            obj[name] = convert(raw)
            plain = False
    names = table[2]
    pairs = iter(cells)
    try:
        for column, raw in zip(pairs, pairs):
            if column < 0:
                raise IndexError(column)
            if type(raw) is str and raw[:1] in inline:
                obj[names[column]] = _inline_int(raw) if raw[:1] == "i" else raw[1:]
            elif raw is None or raw is True or raw is False:
                obj[names[column]] = raw
            else:
                obj[names[column]] = convert(raw)
                plain = False
    except (IndexError, TypeError):
        _named(cells, table)  # raises the error naming the bad column
        raise
    return obj, plain


def _inline_int(raw):
    """An INT64 of the batch text as an int; a malformed one is an error
    naming it, as `_text_json` gives."""
    try:
        return int(raw[1:])
    except ValueError:
        raise Err(f"{raw!r} is not a value of the batch text") from None


def _text_json(raw):
    """A value of the batch text as `to_json` converts its `Value_*`,
    without building one."""
    if type(raw) is str and raw[:1] in _TEXT_TAGS:
        return raw[1:]
    if raw is None or raw is True or raw is False:
        return raw
    try:
        return _TEXT_JSON[raw[0]](raw[1:])
    except (KeyError, IndexError, TypeError, ValueError):
        raise Err(f"{raw!r} is not a value of the batch text") from None


# Tags whose text is the JSON value itself.
_TEXT_TAGS = frozenset("stdn")
# Those, and INT64 (the host writes plain decimals).
_TEXT_OR_INT_TAGS = frozenset("stdni")


def _text_json_int64_as_string(raw):
    """`_text_json`, with an INT64 as its decimal text (as Python writes the
    int it reads, and a malformed one an error, as the named path gives)."""
    if type(raw) is str and raw[:1] == "i":
        return str(_inline_int(raw))
    return _text_json(raw)


def _same(text):
    return text


def _json_text(text):
    try:
        return parse_json(text)
    except ValueError:
        return text


# `_text_json` by type tag.
_TEXT_JSON = {
    "s": _same,
    "t": _same,
    "d": _same,
    "n": _same,
    "i": int,  # the host writes plain decimals
    "f": lambda text: _float_to_json(float(text)),
    "g": lambda text: _float32_to_json(float(text)),
    # Read and written again, as the named value is: the text is checked,
    # and is the standard base64 the named path writes.
    "b": lambda text: base64.b64encode(base64.b64decode(text, validate=True)).decode(),
    "j": _json_text,
}


def format_float(f: float) -> str:
    """A finite float as serde_json 1.0.154 writes it (zmij): the shortest
    round-tripping digits; plain decimal with at least one fractional digit
    when the decimal exponent is in -5..=15, else `d.ddde+N` / `d.ddde-N`
    (e.g. 1e16 -> `1e+16`, 1.5e-7 -> `1.5e-7`)."""
    if not math.isfinite(f):
        raise ValueError(f"JSON has no {f!r}")
    sign = "-" if math.copysign(1.0, f) < 0 else ""
    if f == 0.0:
        return sign + "0.0"
    mantissa, _, exp = repr(abs(f)).partition("e")
    integer, _, fraction = mantissa.partition(".")
    digits = integer + fraction
    point = len(integer) + (int(exp) if exp else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    k = point - 1  # the exponent in d.ddd x 10^k
    if -5 <= k <= 15:
        if len(digits) <= point:
            text = digits + "0" * (point - len(digits)) + ".0"
        elif point > 0:
            text = digits[:point] + "." + digits[point:]
        else:
            text = "0." + "0" * (-point) + digits
    else:
        text = digits[0]
        if len(digits) > 1:
            text += "." + digits[1:]
        text += ("e+" if k >= 0 else "e-") + str(abs(k))
    return sign + text


_ESCAPES = {0x22: '\\"', 0x5C: "\\\\", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}
for _c in range(0x20):
    _ESCAPES.setdefault(_c, "\\u%04x" % _c)
del _c


def _dump_str(s: str, out: list) -> None:
    out.append('"')
    out.append(s.translate(_ESCAPES))
    out.append('"')


def _dump(obj, out: list) -> None:
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, str):
        _dump_str(obj, out)
    elif isinstance(obj, int):
        out.append(str(int(obj)))
    elif isinstance(obj, float):
        out.append(format_float(obj))
    elif isinstance(obj, dict):
        out.append("{")
        first = True
        for k in sorted(obj):
            if not isinstance(k, str):
                raise TypeError(f"JSON object keys must be str, not {type(k).__name__}")
            if not first:
                out.append(",")
            first = False
            _dump_str(k, out)
            out.append(":")
            _dump(obj[k], out)
        out.append("}")
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        for i, item in enumerate(obj):
            if i:
                out.append(",")
            _dump(item, out)
        out.append("]")
    else:
        raise TypeError(f"not JSON-able: {type(obj).__name__}")


def dumps(obj) -> str:
    """Serializes a JSON-able object like `serde_json::to_string` of the
    `serde_json::Value` the Rust SDK builds: compact, object members sorted
    by key (code point order, which is UTF-8 byte order), non-ASCII raw,
    only `"`, `\\` and control characters escaped, floats as serde_json
    writes them. Non-finite floats raise ValueError (serde_json has no
    number for them; `to_json` already turned them into strings)."""
    if _plain(obj):
        return "".join(_plain_encode(obj, 0))
    out = []
    _dump(obj, out)
    return "".join(out)


# CPython's own encoder (in C where the interpreter has `_json`, as the
# component's does) writes exactly serde_json's bytes for everything but
# floats: the same escapes (`"`, `\\`, \b \f \n \r \t, other controls as
# lowercase \u00xx), non-ASCII raw, members sorted in code point order,
# integers in decimal. `dumps` hands it what `_plain` lets through, and
# writes the rest itself.
_PLAIN_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, check_circular=False, allow_nan=False
)
_PLAIN_SCALARS = (str, int, bool, type(None))


def _c_encoder():
    """`_PLAIN_ENCODER`'s C encoder, made once (`encode` makes one per
    call), when this interpreter has it and it writes what `encode` does;
    else `encode` itself, as a function returning chunks."""
    make = getattr(json.encoder, "c_make_encoder", None)
    sample = {"b": [1, "\u00e9\n", None], "a": True}
    if make is not None:
        try:
            encoder = make(None, _PLAIN_ENCODER.default, json.encoder.encode_basestring,
                           None, ":", ",", True, False, False)
            if "".join(encoder(sample, 0)) == _PLAIN_ENCODER.encode(sample):
                return encoder
        except (TypeError, ValueError):
            pass
    return lambda obj, _level: (_PLAIN_ENCODER.encode(obj),)


_plain_encode = _c_encoder()


def _plain(obj) -> bool:
    """Whether `obj` is made only of dicts with str keys, lists, tuples,
    str, int, bool and None (no float, whose text serde_json writes its
    own way, and no subclass of any of them), so `_PLAIN_ENCODER` writes
    it as `_dump` would."""
    kind = type(obj)
    if kind is dict:
        for name, item in obj.items():
            if type(name) is not str:
                return False
            kind = type(item)
            if kind not in _PLAIN_SCALARS and not _plain(item):
                return False
        return True
    if kind is list or kind is tuple:
        # A loop, not all(...): a generator's frames would make nesting
        # that `_dump` writes hit the recursion limit.
        for item in obj:
            if type(item) not in _PLAIN_SCALARS and not _plain(item):
                return False
        return True
    return kind in _PLAIN_SCALARS


# --------------------------------------------------------------------------
# Effects and actions


def _bytes(value, what: str = "value") -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")


def _u64(ms, what: str) -> int:
    if isinstance(ms, bool) or not isinstance(ms, int):
        raise TypeError(f"{what} must be an int of milliseconds, not {type(ms).__name__}")
    if ms < 0:
        raise ValueError(f"{what} must not be negative, got {ms}")
    return min(ms, _U64_MAX)  # saturates, like the Rust SDK's Duration -> u64


def effect_set(key: str, value, ttl_ms: Optional[int] = None):
    """Sets `key` to `value` (str, encoded as UTF-8, or bytes), expiring after
    `ttl_ms` milliseconds when given."""
    ttl = None if ttl_ms is None else _u64(ttl_ms, "ttl_ms")
    kind = type(value)
    value = value if kind is bytes else value.encode("utf-8") if kind is str else _bytes(value)
    return Effect_Set(Write(key, value, ttl))


def effect_delete(key: str):
    """Deletes `key`."""
    return Effect_Delete(key)


def effect_expire(key: str, ttl_ms: int):
    """Makes `key` expire after `ttl_ms` milliseconds."""
    return Effect_Expire(Expiry(key=key, ttl_ms=_u64(ttl_ms, "ttl_ms")))


def _index(index: int, what: str = "change") -> int:
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= _U32_MAX:
        raise ValueError(f"{what} index must be an int in 0..=4294967295, got {index!r}")
    return index


def set(change: int, key: str, value, ttl_ms: Optional[int] = None):  # noqa: A001
    """An action setting `key`, answering the batch's change number `change`."""
    return Action(change=_index(change), effect=effect_set(key, value, ttl_ms))


def delete(change: int, key: str):
    """An action deleting `key`, answering the batch's change number `change`."""
    return Action(change=_index(change), effect=effect_delete(key))


def expire(change: int, key: str, ttl_ms: int):
    """An action expiring `key`, answering the batch's change number `change`."""
    return Action(change=_index(change), effect=effect_expire(key, ttl_ms))


# --------------------------------------------------------------------------
# Cache events


def refresh(table: str, keys):
    """A cache effect asking the host to re-read the row of `table` with
    primary key `keys` (every key column, in key order) from Spanner; the
    host hands it back to `on_changes` as a SNAPSHOT change versioned at the
    read timestamp, or as a DELETE when the row does not exist.

    `keys` holds (name, value) pairs, or is a dict from name to value:

        refresh("Users", [("UserId", Value_Int64(42))])
    """
    if not isinstance(table, str):
        raise TypeError(f"refresh table must be str, not {type(table).__name__}")
    pairs = keys.items() if hasattr(keys, "items") else keys
    return CacheEffect_Refresh(Refresh(table=table, keys=[_key_column(name, value) for name, value in pairs]))


def _key_column(name, value):
    """A refresh key column, checked: a str name and a WIT value."""
    if not isinstance(name, str):
        raise TypeError(f"refresh key column name must be str, not {type(name).__name__}")
    if not isinstance(value, _VALUE_TYPES):
        raise TypeError(f"refresh key {name} must be a Value_* value, not {type(value).__name__}")
    return Column(name=name, value=value)


def field(event, name: str) -> Optional[str]:
    """The value of the cache event's stream entry field `name`, or None
    (keyspace events have no fields)."""
    for field_name, value in event.fields:
        if field_name == name:
            return value
    return None


# --------------------------------------------------------------------------
# Crypto


def seal(key_name: str, plaintext, aad) -> bytes:
    """Encrypts `plaintext` with the current version of key `key_name` and
    returns an envelope naming the key and version (docs/ENVELOPE.md).
    `aad` is authenticated but not stored; a reader must pass the same bytes
    (the Redis key is a good choice). `plaintext` and `aad` are bytes, or
    str encoded as UTF-8.

    Raises `Err` with the host's message when the key is not granted to the
    plugin, the host has no keyring, or the keyring has no key of that name
    (the host audits refused calls); outside WebAssembly, always.
    """
    plaintext, aad = _bytes(plaintext, "plaintext"), _bytes(aad, "aad")
    if _crypto is None:
        raise Err(f"seal with key {_quoted(key_name)}: no keyring outside the host")
    return bytes(_crypto.seal(key_name, plaintext, aad))


def keyed_hash(key_name: str, data) -> str:
    """HMAC-SHA256 of `data` (bytes, or str encoded as UTF-8) under the
    current version of key `key_name`, as lower-case hex: a stable, opaque
    name for data that must not appear in a Redis key (an e-mail address,
    say).

    Raises `Err` as `seal` does.
    """
    data = _bytes(data, "data")
    if _crypto is None:
        raise Err(f"keyed-hash with key {_quoted(key_name)}: no keyring outside the host")
    return _crypto.keyed_hash(key_name, data)


_RUST_ESCAPES = {ord("\\"): "\\\\", ord('"'): '\\"', ord("\t"): "\\t", ord("\r"): "\\r", ord("\n"): "\\n", 0: "\\0"}


def _quoted(text: str) -> str:
    """`text` in double quotes, escaped as Rust's `{:?}` escapes a string
    (printable characters other than `"` and `\\` as they are)."""
    out = []
    for char in text:
        escape = _RUST_ESCAPES.get(ord(char))
        if escape is None and not char.isprintable():
            escape = "\\u{%x}" % ord(char)
        out.append(escape or char)
    return '"' + "".join(out) + '"'


# --------------------------------------------------------------------------
# Plugins


def _message(exc: BaseException) -> str:
    """The text of an error raised by plugin code."""
    if isinstance(exc, Err):
        return str(exc.value)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


class Plugin:
    """A cache plugin: turns Spanner row changes into Redis effects, and
    answers cache events with refresh requests.

    The host creates it once (`__init__`, then `init`) and then calls
    `on_changes` for each batch of changes and `on_cache_events` for each
    batch of cache events; attributes set in `init` live as long as the
    plugin instance. Raise `Err("...")` to fail.
    """

    def init(self) -> None:
        """Called once after loading, before any batch. Read `config` here."""

    def on_change(self, change) -> list:
        """Effects for one `RowChange`; the default ignores every change."""
        return []

    def on_changes(self, batch) -> list:
        """Actions for a batch: a list of `RowChange`s (the wire batch
        decoded by `decode_batch`), in commit order per partition. Each
        action names the index in this list of the change it answers.

        The default calls `on_change` for each change and tags its effects
        with the change's index, like the Rust SDK. An error is reported as
        `change N (table T): message`."""
        actions = []
        append = actions.append
        on_change = self.on_change
        for index, change in enumerate(batch):
            if index > _U32_MAX:
                raise Err(f"batch has more than {_U32_MAX} changes")
            try:
                effects = on_change(change)
            except Exception as exc:  # noqa: BLE001 - reported as the result's error
                raise Err(f"change {index} (table {change.table}): {_message(exc)}") from None
            for effect in effects or ():
                append(Action(index, effect))
        return actions

    def on_cache_event(self, event) -> list:
        """Cache effects (e.g. `refresh(...)` of the row behind a missing
        key) answering one `CacheEvent`; the default ignores every event.

        The host hands the plugin only events on keys under its granted
        prefixes."""
        return []

    def on_cache_events(self, batch) -> list:
        """`CacheAction`s for a list of `CacheEvent`s. The default calls
        `on_cache_event` for each event and tags its effects with the
        event's index, like the Rust SDK. An error is reported as
        `event N (key K): message`."""
        actions = []
        for index, event in enumerate(batch):
            if index > _U32_MAX:
                raise Err(f"batch has more than {_U32_MAX} events")
            try:
                effects = self.on_cache_event(event)
            except Exception as exc:  # noqa: BLE001 - reported as the result's error
                raise Err(f"event {index} (key {event.key}): {_message(exc)}") from None
            for effect in effects or ():
                actions.append(CacheAction(event=index, effect=effect))
        return actions


def register_plugin(plugin_class):
    """Returns the class componentize-py exports for world `cache-plugin`.

    In the plugin's module:

        WitWorld = register_plugin(MyPlugin)

    Its `on_changes` decodes the wire batch with `decode_batch` and hands
    the `RowChange`s to the plugin's `on_changes`; its `on_cache_events`
    hands the events to the plugin's `on_cache_events`.
    """

    class WitWorld:
        _plugin = None

        def init(self) -> None:
            try:
                plugin = plugin_class()
                plugin.init()
            except Exception as exc:  # noqa: BLE001
                raise Err(_message(exc)) from None
            WitWorld._plugin = plugin

        def on_changes(self, batch):
            plugin = WitWorld._plugin
            if plugin is None:
                raise Err("on-changes was called before init succeeded")
            try:
                return list(plugin.on_changes(decode_batch(batch)))
            except Exception as exc:  # noqa: BLE001
                raise Err(_message(exc)) from None

        def on_cache_events(self, batch):
            plugin = WitWorld._plugin
            if plugin is None:
                raise Err("on-cache-events was called before init succeeded")
            try:
                return list(plugin.on_cache_events(batch))
            except Exception as exc:  # noqa: BLE001
                raise Err(_message(exc)) from None

    WitWorld.__name__ = WitWorld.__qualname__ = "WitWorld"
    return WitWorld

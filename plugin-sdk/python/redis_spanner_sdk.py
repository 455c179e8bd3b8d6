"""Write Redis Spanner cache plugins in Python.

A plugin is a WebAssembly component (world `cache-plugin` of
`wit/plugin@0.1.0`) built with componentize-py. The host hands it batches of
Spanner row changes; it answers with a plan of Redis actions.

This module is the Python counterpart of the Rust `redis-spanner-sdk`:

- `Plugin`: subclass it and override `init` and `on_change` (or
  `on_changes` for a whole batch); `register_plugin(cls)` turns the class
  into the `WitWorld` export that componentize-py looks for.
- `key(parts)`: Redis keys with `:`, `\\`, `{` and `}` escaped, like the Rust `key`.
- `to_json(value)`, `row_json(columns)`, `row_json_of(change)` and `dumps(obj)`:
  row JSON that is byte for byte what the Rust SDK's `row_json().to_string()`
  gives (serde_json: members sorted by name, compact, floats like serde_json).
- `effect_set` / `effect_delete` / `effect_expire` build effects (what
  `on_change` returns); `set` / `delete` / `expire` build actions tagged with
  a change index (what `on_changes` returns).
- `log`, `trace` ... `error`, and `config(name)`: the host's functions.

Outside WebAssembly (plain CPython, e.g. unit tests) the generated bindings
are missing; the module then uses look-alike data classes, `log` writes to
standard error and `config` returns None, as the Rust SDK does natively.

Errors: raise `Err("message")` from `init`, `on_change` or `on_changes` to
return the WIT `result`'s error; the default `on_changes` prefixes it with
`change N (table T): `, like the Rust SDK. Any other exception is turned into
an error too (componentize-py would otherwise trap, and the traceback would
be lost).
"""

import base64
import json
import math
import re
import sys
import traceback
from dataclasses import dataclass
from enum import Enum
from typing import List, Optional

#: Version of the WIT package (`redis-spanner:plugin`) this SDK implements.
API_VERSION = "0.1.0"

_U32_MAX = (1 << 32) - 1
_U64_MAX = (1 << 64) - 1
_I64_MIN = -(1 << 63)

try:  # Inside the component: the bindings componentize-py generated.
    from componentize_py_types import Err
    from wit_world.imports import host as _host
    from wit_world.imports.types import (
        Action,
        ChangeKind,
        Column,
        Effect_Delete,
        Effect_Expire,
        Effect_Set,
        Expiry,
        RowChange,
        Value_Bool,
        Value_Bytes,
        Value_Date,
        Value_Float64,
        Value_Int64,
        Value_Json,
        Value_Null,
        Value_Numeric,
        Value_String,
        Value_Timestamp,
        Write,
    )

    LogLevel = _host.LogLevel
    IN_WASM = True
except ImportError:  # Plain CPython: look-alikes with the same shapes.
    _host = None
    IN_WASM = False

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
    class RowChange:
        table: str
        kind: ChangeKind
        keys: List[Column]
        new_values: List[Column]
        old_values: List[Column]
        commit_micros: int
        transaction_id: str
        record_sequence: str
        transaction_tag: str

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

    class LogLevel(Enum):
        TRACE = 0
        DEBUG = 1
        INFO = 2
        WARN = 3
        ERROR = 4


# --------------------------------------------------------------------------
# Host functions


def log(level, message: str) -> None:
    """Writes `message` to the host's log at `level` (a `LogLevel`)."""
    if _host is not None:
        _host.log(level, message)
    else:
        print(f"[{level.name.title()}] {message}", file=sys.stderr)


def trace(message: str) -> None:
    log(LogLevel.TRACE, message)


def debug(message: str) -> None:
    log(LogLevel.DEBUG, message)


def info(message: str) -> None:
    log(LogLevel.INFO, message)


def warn(message: str) -> None:
    log(LogLevel.WARN, message)


def error(message: str) -> None:
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
    return key_with_tag(parts, -1)


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
        if isinstance(part, int) and not isinstance(part, bool):
            part = str(part)
        elif not isinstance(part, str):
            raise TypeError(f"key part must be str or int, not {type(part).__name__}")
        escaped = part.translate(_KEY_ESCAPES)
        out.append("{" + escaped + "}" if i == tag and escaped else escaped)
    return ":".join(out)


# --------------------------------------------------------------------------
# Column lookup


def _find(columns, name: str):
    for column in columns:
        if column.name == name:
            return column.value
    return None


def key_value(change, name: str):
    """The value of primary key column `name`, or None if there is none."""
    return _find(change.keys, name)


def new_value(change, name: str):
    """The value of non-key column `name` after the change, or None."""
    return _find(change.new_values, name)


def old_value(change, name: str):
    """The value of non-key column `name` before the change, or None."""
    return _find(change.old_values, name)


def as_i64(value) -> Optional[int]:
    """The int of an INT64 value; None for any other type, NULL or None."""
    return value.value if isinstance(value, Value_Int64) else None


def as_f64(value) -> Optional[float]:
    """The float of a FLOAT64 value; None otherwise."""
    return value.value if isinstance(value, Value_Float64) else None


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


def to_json(value):
    """Converts a WIT `value` to a JSON-able Python object, like the Rust
    SDK's `Value::to_json`.

    NULL -> None, BOOL -> bool, INT64 -> int, FLOAT64 -> float ("NaN",
    "Infinity", "-Infinity" as strings), STRING/TIMESTAMP/DATE/NUMERIC -> str,
    BYTES -> standard base64 str with padding, JSON -> the parsed document
    (the text itself when it does not parse).
    """
    if isinstance(value, Value_Null):
        return None
    if isinstance(value, Value_Bool):
        return bool(value.value)
    if isinstance(value, Value_Int64):
        return int(value.value)
    if isinstance(value, Value_Float64):
        return _float_to_json(float(value.value))
    if isinstance(value, (Value_String, Value_Timestamp, Value_Date, Value_Numeric)):
        return value.value
    if isinstance(value, Value_Bytes):
        return base64.b64encode(bytes(value.value)).decode("ascii")
    if isinstance(value, Value_Json):
        try:
            return parse_json(value.value)
        except ValueError:
            return value.value
    raise TypeError(f"not a WIT value: {value!r}")


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
    return row_json(list(change.keys) + list(change.new_values), int64_as_string)


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
    out = []
    _dump(obj, out)
    return "".join(out)


# --------------------------------------------------------------------------
# Effects and actions


def _bytes(value) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"value must be str or bytes, not {type(value).__name__}")


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
    return Effect_Set(Write(key=key, value=_bytes(value), ttl_ms=ttl))


def effect_delete(key: str):
    """Deletes `key`."""
    return Effect_Delete(key)


def effect_expire(key: str, ttl_ms: int):
    """Makes `key` expire after `ttl_ms` milliseconds."""
    return Effect_Expire(Expiry(key=key, ttl_ms=_u64(ttl_ms, "ttl_ms")))


def _index(change: int) -> int:
    if isinstance(change, bool) or not isinstance(change, int) or not 0 <= change <= _U32_MAX:
        raise ValueError(f"change index must be an int in 0..=4294967295, got {change!r}")
    return change


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
# Plugins


def _message(exc: BaseException) -> str:
    """The text of an error raised by plugin code."""
    if isinstance(exc, Err):
        return str(exc.value)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


class Plugin:
    """A cache plugin: turns Spanner row changes into Redis effects.

    The host creates it once (`__init__`, then `init`) and then calls
    `on_changes` for each batch; attributes set in `init` live as long as
    the plugin instance. Raise `Err("...")` to fail.
    """

    def init(self) -> None:
        """Called once after loading, before any batch. Read `config` here."""

    def on_change(self, change) -> list:
        """Effects for one row change; the default ignores every change."""
        return []

    def on_changes(self, batch) -> list:
        """Actions for a batch: calls `on_change` for each change and tags
        its effects with the change's index, like the Rust SDK. An error is
        reported as `change N (table T): message`."""
        actions = []
        for index, change in enumerate(batch):
            if index > _U32_MAX:
                raise Err(f"batch has more than {_U32_MAX} changes")
            try:
                effects = self.on_change(change)
            except Exception as exc:  # noqa: BLE001 - reported as the result's error
                raise Err(f"change {index} (table {change.table}): {_message(exc)}") from None
            for effect in effects or ():
                actions.append(Action(change=index, effect=effect))
        return actions


def register_plugin(plugin_class):
    """Returns the class componentize-py exports for world `cache-plugin`.

    In the plugin's module:

        WitWorld = register_plugin(MyPlugin)
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
                return list(plugin.on_changes(batch))
            except Exception as exc:  # noqa: BLE001
                raise Err(_message(exc)) from None

    WitWorld.__name__ = WitWorld.__qualname__ = "WitWorld"
    return WitWorld

"""Unit tests of redis_spanner_sdk on plain CPython.

    cd plugin-sdk/python && python3 -m unittest

The expected strings are what the Rust SDK (serde_json 1.0.154) produces.
"""

import base64
import json
import math
import os
import random
import struct
import sys
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import redis_spanner_sdk as sdk  # noqa: E402
from redis_spanner_sdk import (  # noqa: E402
    Action,
    CacheAction,
    CacheEffect_Refresh,
    CacheEvent,
    ChangeKind,
    Column,
    Effect_Delete,
    Effect_Expire,
    Effect_Set,
    Err,
    Expiry,
    EventSource,
    Plugin,
    Refresh,
    RowChange,
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
    decode_batch,
    dumps,
    key,
    register_plugin,
    row_json,
    row_json_of,
    to_json,
)


def change(table="Users", kind=ChangeKind.UPDATE, keys=(), new_values=(), tx="tx"):
    return RowChange(
        table=table,
        kind=kind,
        keys=list(keys),
        new_values=list(new_values),
        old_values=[],
        commit_micros=1_700_000_000_000_000,
        transaction_id=tx,
        record_sequence=0,
        transaction_tag="",
    )


_TAGS = {
    Value_Int64: "i", Value_Float32: "g", Value_Float64: "f", Value_String: "s",
    Value_Bytes: "b", Value_Timestamp: "t", Value_Date: "d", Value_Numeric: "n", Value_Json: "j",
}
_KIND_INDEX = {ChangeKind.INSERT: 0, ChangeKind.UPDATE: 1, ChangeKind.DELETE: 2, ChangeKind.SNAPSHOT: 3}


def value_text(value):
    """A value as the batch text carries it (docs/BATCH-TEXT.md), written
    here apart from the SDK."""
    if isinstance(value, Value_Null):
        return None
    if isinstance(value, Value_Bool):
        return value.value
    tag = _TAGS[type(value)]
    if isinstance(value, (Value_Float32, Value_Float64)):
        f = value.value
        text = "NaN" if math.isnan(f) else ("Infinity" if f > 0 else "-Infinity") if math.isinf(f) else repr(f)
    elif isinstance(value, Value_Bytes):
        text = base64.b64encode(value.value).decode("ascii")
    else:
        text = str(value.value)
    return tag + text


def batch_text(tables, transactions, changes):
    """The batch text of already positional parts: tables as `(name, keys,
    columns)`, transactions as `(id, tag, micros)`, changes as `(table,
    kind, [key values], [(column, value)], [(column, value)], transaction,
    sequence)`."""
    def cells(pairs):
        return [item for column, value in pairs for item in (column, value_text(value))]
    return json.dumps([
        [list(t) for t in tables],
        [[tx_id, tag, str(micros)] for tx_id, tag, micros in transactions],
        [[t, _KIND_INDEX[kind], [value_text(v) for v in keys], cells(new), cells(old), tx, seq]
         for t, kind, keys, new, old, tx, seq in changes],
    ]).encode()


def encode_batch(changes):
    """The batch text of `changes`, as the host sends it: each table (its
    columns in first-seen order) and each transaction once, values by
    position."""
    tables, table_index, transactions, transaction_index = [], {}, [], {}
    for c in changes:
        if c.table not in table_index:
            table_index[c.table] = len(tables)
            tables.append((c.table, [k.name for k in c.keys], []))
        columns = tables[table_index[c.table]][2]
        for column in list(c.new_values) + list(c.old_values):
            if column.name not in columns:
                columns.append(column.name)
        tx = (c.transaction_id, c.transaction_tag, c.commit_micros)
        if tx not in transaction_index:
            transaction_index[tx] = len(transactions)
            transactions.append(tx)
    wire = []
    for c in changes:
        columns = tables[table_index[c.table]][2]
        wire.append((
            table_index[c.table],
            c.kind,
            [k.value for k in c.keys],
            [(columns.index(v.name), v.value) for v in c.new_values],
            [(columns.index(v.name), v.value) for v in c.old_values],
            transaction_index[(c.transaction_id, c.transaction_tag, c.commit_micros)],
            c.record_sequence,
        ))
    return batch_text(tables, transactions, wire)


def event(key="users:42", kind="miss", source=EventSource.APPLICATION, fields=()):
    return CacheEvent(source=source, kind=kind, key=key, fields=list(fields), id="1-0")


def f32(x):
    """`x` rounded to float32."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def f32_bits(bits):
    """The float32 with bit pattern `bits`."""
    return struct.unpack("<f", struct.pack("<I", bits))[0]


def json_text(text):
    """dumps(to_json(json column)), as the Rust SDK writes a JSON column."""
    return dumps(to_json(Value_Json(text)))


class IntFlagLike(int):
    """An int subclass: `dumps` writes it with its own writer."""


class KeyTest(unittest.TestCase):
    def test_the_tag_part_alone_is_in_braces(self):
        self.assertEqual(sdk.key_with_tag(["orders", "42", 7], 1), "orders:{42}:7")
        self.assertEqual(sdk.key_with_tag(["{x}", "y"], 0), r"{\(x\)}:y")
        self.assertEqual(sdk.key_with_tag(["a", "b"], 2), "a:b")
        self.assertEqual(sdk.key_with_tag(["a", ""], 1), "a:")
        with self.assertRaises(TypeError):
            sdk.key_with_tag(["a", "b"], False)
        with self.assertRaises(TypeError):
            key(["a", 1.5])

    def test_joins_with_colons(self):
        self.assertEqual(key(["users", "42"]), "users:42")
        self.assertEqual(key(["a", "b", "c"]), "a:b:c")
        self.assertEqual(key(["solo"]), "solo")
        self.assertEqual(key([]), "")

    def test_escapes_colon_and_backslash(self):
        self.assertEqual(key(["a:b"]), r"a\:b")
        self.assertEqual(key([r"a\b"]), r"a\\b")
        self.assertEqual(key(["t", r"x\:y"]), r"t:x\\\:y")
        self.assertEqual(key(["files", r"C:\tmp"]), r"files:C\:\\tmp")

    def test_braces_never_reach_the_key(self):
        self.assertEqual(key(["u", "{x}"]), r"u:\(x\)")
        self.assertEqual(key(["u", "}{"]), r"u:\)\(")
        self.assertNotRegex(key(["{a}", "b}", "{c"]), r"[{}]")

    def test_ints_are_written_in_decimal(self):
        self.assertEqual(key(["users", 42]), "users:42")
        self.assertEqual(key(["users", -9223372036854775808]), "users:-9223372036854775808")
        with self.assertRaises(TypeError):
            key(["users", True])
        with self.assertRaises(TypeError):
            key(["users", 1.5])

    def test_different_parts_give_different_keys(self):
        cases = [["a", "b"], ["a:b"], ["a\\", "b"], [r"a\:b"], ["a\\", ":b"], ["a", "", "b"],
                 ["a:", "b"], ["a", ":b"], [""], ["", ""]]
        self.assertEqual(len({key(c) for c in cases}), len(cases))


class SplitKeyTest(unittest.TestCase):
    def test_undoes_key(self):
        cases = [["users", "42"], ["a:b", "c\\d", "{e}", "}{", ""], [r"\(x\)", ":", "\\"], ["", ""],
                 ["ü", "日本:語"]]
        for parts in cases:
            self.assertEqual(sdk.split_key(key(parts)), parts)
        self.assertEqual(sdk.split_key(r"orders:eu\:\(1\):7"), ["orders", "eu:{1}", "7"])
        self.assertEqual(sdk.split_key(""), [""])

    def test_refuses_what_key_never_makes(self):
        for bad in ["a\\", r"a:\x", r"\{", "a:{b}", "a}", r"a\ b", "\\"]:
            self.assertIsNone(sdk.split_key(bad), bad)
        self.assertIsNone(sdk.split_key(sdk.key_with_tag(["o", "42"], 1)))


class ValueFromTextTest(unittest.TestCase):
    ROUND_TRIPS = [
        ("INT64", Value_Int64(0)),
        ("INT64", Value_Int64(-42)),
        ("INT64", Value_Int64(2**63 - 1)),
        ("INT64", Value_Int64(-(2**63))),
        ("STRING", Value_String("eu:{1} ü")),
        ("STRING", Value_String("")),
        ("BYTES", Value_Bytes(b"\x00\x01\xff")),
        ("BYTES", Value_Bytes(b"\xfb")),
        ("BYTES", Value_Bytes(b"")),
        ("DATE", Value_Date("2024-02-29")),
        ("TIMESTAMP", Value_Timestamp("2024-02-29T12:34:56.789Z")),
        ("NUMERIC", Value_Numeric("-12.50")),
        ("BOOL", Value_Bool(True)),
        ("BOOL", Value_Bool(False)),
        ("FLOAT64", Value_Float64(1.5)),
        ("FLOAT64", Value_Float64(1.0)),
        ("FLOAT64", Value_Float64(-0.0)),
        ("FLOAT64", Value_Float64(1e16)),
        ("FLOAT64", Value_Float64(1.5e-7)),
        ("FLOAT64", Value_Float64(sys.float_info.max)),
        ("FLOAT64", Value_Float64(0.1 + 0.2)),
        ("FLOAT64", Value_Float64(math.inf)),
        ("FLOAT64", Value_Float64(-math.inf)),
    ]

    def test_key_values_come_back_from_their_text(self):
        for spanner_type, value in self.ROUND_TRIPS:
            text = sdk.to_text(value)
            back = sdk.value_from_text(spanner_type, text)
            self.assertEqual(back, value, (spanner_type, text))
            self.assertIs(type(back.value), type(value.value))
            if isinstance(value, Value_Float64):
                self.assertEqual(math.copysign(1, back.value), math.copysign(1, value.value), text)
        self.assertTrue(math.isnan(sdk.value_from_text("FLOAT64", "NaN").value))
        self.assertEqual(sdk.value_from_text("FLOAT64", "2E+3"), Value_Float64(2000.0))
        self.assertEqual(sdk.value_from_text("FLOAT64", "7"), Value_Float64(7.0))

    def test_text_that_is_no_key_value_gives_none(self):
        bad = [
            ("INT64", ""), ("INT64", "+1"), ("INT64", "01"), ("INT64", "-0"), ("INT64", " 1"),
            ("INT64", "1.0"), ("INT64", "9223372036854775808"), ("INT64", "0x10"), ("INT64", "1_0"),
            ("INT64", "\u0663"), ("BOOL", "TRUE"), ("BOOL", "1"), ("FLOAT64", ""), ("FLOAT64", "nan"),
            ("FLOAT64", "inf"), ("FLOAT64", "+1.5"), ("FLOAT64", ".5"), ("FLOAT64", "1."),
            ("FLOAT64", "01.5"), ("FLOAT64", "1e"), ("FLOAT64", "1e400"), ("FLOAT64", " 1.5"),
            ("FLOAT64", "1_0.5"), ("BYTES", "AAH"), ("BYTES", "AAH/="), ("BYTES", "AB=="),
            ("BYTES", "AA-_"), ("BYTES", "AAH/\n"), ("BYTES", "ü"), ("FLOAT32", "1.5"),
            ("JSON", "{}"), ("int64", "1"),
        ]
        for spanner_type, text in bad:
            self.assertIsNone(sdk.value_from_text(spanner_type, text), (spanner_type, text))


class ToJsonTest(unittest.TestCase):
    def test_a_subclass_of_a_value_converts_as_its_value_and_others_are_refused(self):
        class Name(Value_String):
            pass

        self.assertEqual(to_json(Name("Ada")), "Ada")
        with self.assertRaises(TypeError):
            to_json("Ada")

    def test_scalars(self):
        self.assertIsNone(to_json(Value_Null()))
        self.assertIs(to_json(Value_Bool(True)), True)
        self.assertEqual(to_json(Value_Int64(2**63 - 1)), 9223372036854775807)
        self.assertEqual(to_json(Value_Int64(-42)), -42)
        self.assertEqual(to_json(Value_Float64(1.5)), 1.5)
        self.assertEqual(to_json(Value_String('héllo "x"')), 'héllo "x"')

    def test_non_finite_floats_become_strings(self):
        self.assertEqual(to_json(Value_Float64(math.nan)), "NaN")
        self.assertEqual(to_json(Value_Float64(math.inf)), "Infinity")
        self.assertEqual(to_json(Value_Float64(-math.inf)), "-Infinity")

    def test_bytes_become_base64(self):
        self.assertEqual(to_json(Value_Bytes(b"foobar")), "Zm9vYmFy")
        self.assertEqual(to_json(Value_Bytes(b"\xff")), "/w==")
        self.assertEqual(to_json(Value_Bytes(b"")), "")

    def test_textual_types_stay_strings(self):
        ts = "2024-05-01T12:00:00.123456Z"
        self.assertEqual(to_json(Value_Timestamp(ts)), ts)
        self.assertEqual(to_json(Value_Date("2024-05-01")), "2024-05-01")
        self.assertEqual(to_json(Value_Numeric("12345678901234567890.123456789")),
                         "12345678901234567890.123456789")

    def test_json_is_embedded(self):
        self.assertEqual(to_json(Value_Json('{"a":[1,2,{"b":null}]}')), {"a": [1, 2, {"b": None}]})
        self.assertEqual(to_json(Value_Json("[1,2]")), [1, 2])

    def test_unparsable_json_is_kept_as_text(self):
        for text in ["{oops", "", "[1,]", "01", "1.", "NaN", "[Infinity]", "-Infinity", "1 2", "\ufeff1"]:
            self.assertEqual(to_json(Value_Json(text)), text, text)

    def test_json_numbers_like_serde_json(self):
        # integers fitting u64 / i64 stay integers; others become floats
        self.assertEqual(json_text("18446744073709551615"), "18446744073709551615")
        self.assertEqual(json_text("18446744073709551616"), "1.8446744073709552e+19")
        self.assertEqual(json_text("-9223372036854775808"), "-9223372036854775808")
        self.assertEqual(json_text("-9223372036854775809"), "-9.223372036854776e+18")
        self.assertEqual(json_text("-0"), "-0.0")
        self.assertEqual(json_text("1E2"), "100.0")
        self.assertEqual(json_text("[1.0,2.5e-8,1e16]"), "[1.0,2.5e-8,1e+16]")
        self.assertEqual(json_text("-1e-400"), "-0.0")
        self.assertEqual(json_text("0e999999999999"), "0.0")
        # out of range: serde_json fails, the text is kept
        for text in ["1e400", "-1e400", "1e99999999999", "[1.8e308]", "1" + "0" * 400]:
            self.assertEqual(to_json(Value_Json(text)), text, text)

    def test_json_floats_are_the_nearest_double(self):
        # serde_json with float_roundtrip (the Rust SDK's) rounds correctly;
        # its default parser would give 2.0000000000000002e-24 and so on
        self.assertEqual(json_text("2e-24"), "2e-24")
        self.assertEqual(json_text("305970748e-23"), "3.05970748e-15")
        self.assertEqual(json_text("58436331998103e25"), "5.8436331998103e+38")
        self.assertEqual(json_text("0.30000000000000004"), "0.30000000000000004")
        self.assertEqual(json_text("90.33333333333333"), "90.33333333333333")
        self.assertEqual(json_text("123456789012345678901"), "1.2345678901234568e+20")
        self.assertEqual(json_text("18446744073709551616.1"), "1.8446744073709552e+19")

    def test_json_surrogates_like_serde_json(self):
        self.assertEqual(to_json(Value_Json('"\\ud83d\\ude00"')), "\U0001F600")
        for text in ['"\\ud800"', '"\\udc00"', '"\\ud83dx"', '{"a":"\\ud800","a":1}',
                     '{"a":["\\udc00"],"a":1}', '"\\ud83d\\n"']:
            self.assertEqual(to_json(Value_Json(text)), text, text)
        self.assertEqual(to_json(Value_Json('"\\\\ud800"')), "\\ud800")

    def test_json_nesting_limit_like_serde_json(self):
        ok = "[" * 127 + "]" * 127
        self.assertEqual(json_text(ok), ok)
        for text in ["[" * 128 + "]" * 128, '{"a":' + "[" * 127 + "]" * 127 + ',"a":1}', "[" * 5000 + "]" * 5000]:
            self.assertEqual(to_json(Value_Json(text)), text)

    def test_duplicate_json_members_last_wins(self):
        self.assertEqual(json_text('{"a":1,"a":2}'), '{"a":2}')


class DumpsTest(unittest.TestCase):
    def test_floats_like_serde_json(self):
        cases = [(-0.0, "-0.0")] + list({
            1.0: "1.0", 0.1: "0.1", 1e16: "1e+16", 1.5e-7: "1.5e-7", 123.456: "123.456",
            1e21: "1e+21", 0.0: "0.0", 1e15: "1000000000000000.0",
            1e-5: "0.00001", 1.23e-5: "0.0000123", 1e-6: "1e-6", 5e-324: "5e-324",
            1.7976931348623157e308: "1.7976931348623157e+308", 12345678901234567.0: "1.2345678901234568e+16",
            1e100: "1e+100", 0.3333333333333333: "0.3333333333333333", 123456.789: "123456.789",
            -2.5: "-2.5", 9007199254740993.0: "9007199254740992.0",
        }.items())
        for value, text in cases:
            self.assertEqual(dumps(value), text, repr(value))

    def test_non_finite_floats_are_refused(self):
        for value in (math.nan, math.inf, -math.inf):
            with self.assertRaises(ValueError):
                dumps(value)

    def test_strings_like_serde_json(self):
        self.assertEqual(dumps('"\\'), '"\\"\\\\"')
        self.assertEqual(dumps("\b\f\n\r\t"), '"\\b\\f\\n\\r\\t"')
        self.assertEqual(dumps("\x00\x01\x1f\x7f"), '"\\u0000\\u0001\\u001f\x7f"')
        self.assertEqual(dumps("é日😀\u2028/"), '"é日😀\u2028/"')

    def test_objects_sorted_by_utf8_bytes(self):
        obj = {"é": 1, "e": 2, "😀": 3, "\uffff": 4, "Z": 5, "": 6, "a": {"y": True, "x": None}}
        self.assertEqual(dumps(obj), '{"":6,"Z":5,"a":{"x":null,"y":true},"e":2,"é":1,"\uffff":4,"😀":3}')

    def test_the_c_encoder_writes_what_the_own_writer_does(self):
        # `dumps` hands float-free objects to CPython's encoder; the SDK's
        # own writer must give the same text for each of them.
        every_char = "".join(map(chr, range(0x80))) + "é\u2028\uffff😀"
        objects = [
            every_char,
            {every_char: [every_char, 1 << 70, -(1 << 63), True, None], "": {}},
            {"b": {"é": 1, "e": (2, "x")}, "a": [], "😀": "\uffff"},
        ]
        for obj in objects:
            self.assertTrue(sdk._plain(obj), repr(obj))
            own = []
            sdk._dump(obj, own)
            self.assertEqual(dumps(obj), "".join(own), repr(obj))

    def test_nesting_the_own_writer_writes_is_written(self):
        deep = []
        for _ in range(600):
            deep = [deep]
        self.assertEqual(dumps(deep), "[" * 601 + "]" * 601)

    def test_floats_and_other_keys_take_the_own_writer(self):
        for obj in ({"a": 1.5}, [1, [2.0]], {1: 2}, {"a": {"b": 0.1}}, IntFlagLike(3)):
            self.assertFalse(sdk._plain(obj), repr(obj))
        self.assertEqual(dumps({"b": [1e16], "a": 1.5e-7}), '{"a":1.5e-7,"b":[1e+16]}')

    def test_compact_and_typed(self):
        self.assertEqual(dumps([1, -2, True, False, None, [], {}]), "[1,-2,true,false,null,[],{}]")
        with self.assertRaises(TypeError):
            dumps({1: 2})
        with self.assertRaises(TypeError):
            dumps(object())


class RowJsonTest(unittest.TestCase):
    def users_update(self):
        return change(
            keys=[Column("UserId", Value_Int64(42))],
            new_values=[
                Column("Name", Value_String("Ada")),
                Column("Avatar", Value_Bytes(b"\xff")),
                Column("Email", Value_Null()),
            ],
        )

    def test_row_json_has_keys_and_new_values_sorted_by_name(self):
        row = row_json_of(self.users_update())
        self.assertEqual(row, {"UserId": 42, "Name": "Ada", "Avatar": "/w==", "Email": None})
        self.assertEqual(dumps(row), '{"Avatar":"/w==","Email":null,"Name":"Ada","UserId":42}')

    def test_int64_as_string_writes_decimal_strings(self):
        c = change(keys=[Column("Id", Value_Int64(9007199254740993))], new_values=[])
        self.assertEqual(dumps(row_json_of(c, int64_as_string=True)), '{"Id":"9007199254740993"}')
        self.assertEqual(dumps(row_json_of(c)), '{"Id":9007199254740993}')

    def test_later_column_wins(self):
        row = row_json([Column("A", Value_Int64(1)), Column("A", Value_Int64(2))])
        self.assertEqual(dumps(row), '{"A":2}')
        self.assertEqual(dumps(row_json([])), "{}")

    def test_lookups(self):
        c = self.users_update()
        self.assertEqual(sdk.key_value(c, "UserId"), Value_Int64(42))
        self.assertIsNone(sdk.key_value(c, "Name"))
        self.assertEqual(sdk.as_str(sdk.new_value(c, "Name")), "Ada")
        self.assertIsNone(sdk.old_value(c, "Name"))
        self.assertEqual(sdk.as_i64(Value_Int64(7)), 7)
        self.assertIsNone(sdk.as_i64(Value_String("7")))
        self.assertIsNone(sdk.as_i64(None))
        self.assertIsNone(sdk.as_str(Value_Timestamp("x")))
        self.assertTrue(sdk.is_null(Value_Null()))
        self.assertEqual(sdk.as_timestamp(Value_Timestamp("2024-02-29T23:59:59.999999Z")), "2024-02-29T23:59:59.999999Z")
        self.assertIsNone(sdk.as_timestamp(Value_String("x")))
        self.assertEqual(sdk.as_date(Value_Date("2024-05-01")), "2024-05-01")
        self.assertEqual(sdk.as_numeric(Value_Numeric("1.5")), "1.5")
        self.assertEqual(sdk.as_json_text(Value_Json("[1]")), "[1]")
        self.assertIsNone(sdk.as_json_text(Value_String("[1]")))

    def test_to_text(self):
        self.assertIsNone(sdk.to_text(Value_Null()))
        self.assertEqual(sdk.to_text(Value_String("a:b")), "a:b")
        self.assertEqual(sdk.to_text(Value_Json('{"a": 1}')), '{"a": 1}')
        self.assertEqual(sdk.to_text(Value_Int64(-7)), "-7")
        self.assertEqual(sdk.to_text(Value_Bool(True)), "true")
        self.assertEqual(sdk.to_text(Value_Float64(1e16)), "1e+16")
        self.assertEqual(sdk.to_text(Value_Float64(math.nan)), "NaN")
        self.assertEqual(sdk.to_text(Value_Bytes(b"\xff")), "/w==")


class EffectTest(unittest.TestCase):
    def test_effects(self):
        self.assertEqual(sdk.effect_set("k", "v"), Effect_Set(Write("k", b"v", None)))
        self.assertEqual(sdk.effect_set("k", b"\x01\x02", ttl_ms=1500), Effect_Set(Write("k", b"\x01\x02", 1500)))
        self.assertEqual(sdk.effect_set("k", "é"), Effect_Set(Write("k", "é".encode(), None)))
        self.assertEqual(sdk.effect_delete("k"), Effect_Delete("k"))
        self.assertEqual(sdk.effect_expire("k", 2000), Effect_Expire(Expiry("k", 2000)))
        self.assertEqual(sdk.effect_expire("k", 2**70), Effect_Expire(Expiry("k", 2**64 - 1)))
        with self.assertRaises(ValueError):
            sdk.effect_expire("k", -1)
        with self.assertRaises(TypeError):
            sdk.effect_set("k", 5)

    def test_actions(self):
        self.assertEqual(sdk.set(3, "k", "v", ttl_ms=10), Action(3, Effect_Set(Write("k", b"v", 10))))
        self.assertEqual(sdk.delete(0, "k"), Action(0, Effect_Delete("k")))
        self.assertEqual(sdk.expire(1, "k", 5), Action(1, Effect_Expire(Expiry("k", 5))))
        with self.assertRaises(ValueError):
            sdk.delete(-1, "k")
        with self.assertRaises(ValueError):
            sdk.delete(2**32, "k")


class Deleter(Plugin):
    """Deletes one key per change of table T, fails on table Bad."""

    def on_change(self, c):
        if c.table == "T":
            return [sdk.effect_delete(c.transaction_id)]
        if c.table == "Bad":
            raise Err("no good")
        if c.table == "Bug":
            raise KeyError("oops")
        return []


class PluginTest(unittest.TestCase):
    def test_default_on_changes_tags_effects_with_change_index(self):
        batch = [change("T", tx="a"), change("Other", tx="b"), change("T", tx="c")]
        self.assertEqual(Deleter().on_changes(batch),
                         [Action(0, Effect_Delete("a")), Action(2, Effect_Delete("c"))])

    def test_default_on_changes_names_the_failing_change(self):
        with self.assertRaises(Err) as caught:
            Deleter().on_changes([change("T", tx="a"), change("Bad", tx="b")])
        self.assertEqual(caught.exception.value, "change 1 (table Bad): no good")

    def test_other_exceptions_become_errors(self):
        with self.assertRaises(Err) as caught:
            Deleter().on_changes([change("Bug")])
        self.assertRegex(caught.exception.value, r"^change 0 \(table Bug\): KeyError: 'oops' at .*:\d+$")

    def test_default_on_change_ignores_everything(self):
        self.assertEqual(Plugin().on_changes([change("T")]), [])

    def test_registered_plugin(self):
        world = register_plugin(Deleter)
        self.assertEqual(world.__name__, "WitWorld")
        instance = world()
        with self.assertRaises(Err) as caught:
            instance.on_changes(encode_batch([change("T", tx="a")]))
        self.assertEqual(caught.exception.value, "on-changes was called before init succeeded")
        with self.assertRaises(Err) as caught:
            instance.on_cache_events([event()])
        self.assertEqual(caught.exception.value, "on-cache-events was called before init succeeded")
        instance.init()
        batch = encode_batch([change("T", tx="a"), change("Other", tx="b"), change("T", tx="c")])
        self.assertEqual(instance.on_changes(batch), [Action(0, Effect_Delete("a")), Action(2, Effect_Delete("c"))])
        with self.assertRaises(Err) as caught:
            instance.on_changes(encode_batch([change("T", tx="a"), change("Bad", tx="b")]))
        self.assertEqual(caught.exception.value, "change 1 (table Bad): no good")
        self.assertEqual(instance.on_cache_events([event()]), [])

    def test_init_errors(self):
        class Failing(Plugin):
            def init(self):
                raise Err("set prefix in the manifest")

        with self.assertRaises(Err) as caught:
            register_plugin(Failing)().init()
        self.assertEqual(caught.exception.value, "set prefix in the manifest")

    def test_config_and_log_outside_wasm(self):
        self.assertFalse(sdk.IN_WASM)
        self.assertEqual(sdk.API_VERSION, "0.4.0")
        self.assertIsNone(sdk.config("prefix"))
        sdk.log(sdk.LogLevel.DEBUG, "hello from the tests")


class DecodeBatchTest(unittest.TestCase):
    def parts(self):
        """Two tables; changes 0 and 1 share a transaction; change 1 carries
        some columns only, with old values; change 2 is a read."""
        return (
            [("Users", ["UserId"], ["Name", "Email", "Score"]), ("Orders", ["UserId", "OrderId"], ["Total"])],
            [("tx-1", "checkout", 1_700_000_000_000_001), ("", "", 1_700_000_000_000_002)],
            [
                (1, ChangeKind.INSERT, [Value_Int64(7), Value_Int64(1001)],
                 [(0, Value_Numeric("12.50"))], [], 0, 0),
                (0, ChangeKind.UPDATE, [Value_Int64(7)],
                 [(2, Value_Float32(f32(0.1))), (0, Value_String("Ada"))], [(0, Value_String("Ad"))], 0, 1),
                (0, ChangeKind.SNAPSHOT, [Value_Int64(8)],
                 [(0, Value_String("Bo")), (1, Value_Null()), (2, Value_Float32(1.5))], [], 1, 0),
            ],
        )

    def compact_batch(self):
        return batch_text(*self.parts())

    def test_decodes_names_and_transactions(self):
        self.assertEqual(decode_batch(self.compact_batch()), [
            RowChange(
                table="Orders", kind=ChangeKind.INSERT,
                keys=[Column("UserId", Value_Int64(7)), Column("OrderId", Value_Int64(1001))],
                new_values=[Column("Total", Value_Numeric("12.50"))], old_values=[],
                commit_micros=1_700_000_000_000_001, transaction_id="tx-1", record_sequence=0,
                transaction_tag="checkout",
            ),
            RowChange(
                table="Users", kind=ChangeKind.UPDATE,
                keys=[Column("UserId", Value_Int64(7))],
                new_values=[Column("Score", Value_Float32(f32(0.1))), Column("Name", Value_String("Ada"))],
                old_values=[Column("Name", Value_String("Ad"))],
                commit_micros=1_700_000_000_000_001, transaction_id="tx-1", record_sequence=1,
                transaction_tag="checkout",
            ),
            RowChange(
                table="Users", kind=ChangeKind.SNAPSHOT,
                keys=[Column("UserId", Value_Int64(8))],
                new_values=[Column("Name", Value_String("Bo")), Column("Email", Value_Null()),
                            Column("Score", Value_Float32(1.5))],
                old_values=[],
                commit_micros=1_700_000_000_000_002, transaction_id="", record_sequence=0,
                transaction_tag="",
            ),
        ])

    def test_every_value_type_reads_back_exactly(self):
        values = [
            Value_Null(), Value_Bool(True), Value_Bool(False), Value_Int64(-(1 << 63)),
            Value_Int64((1 << 63) - 1), Value_Float32(f32(0.1)), Value_Float32(-math.inf),
            Value_Float64(0.1), Value_Float64(-0.0), Value_Float64(5e-324), Value_Float64(math.inf),
            Value_String('a"b\\c\n\u0001\u00e9\U0001F600'), Value_Bytes(b"\x00\xff\x01"),
            Value_Timestamp("2024-01-02T03:04:05Z"), Value_Date("2024-01-02"),
            Value_Numeric("1.50"), Value_Json('{"a":1}'),
        ]
        names = [f"c{i}" for i in range(len(values))]
        text = batch_text([("T", ["Id"], names)], [("", "", 1)],
                          [(0, ChangeKind.UPDATE, [Value_Int64(1)], list(enumerate(values)), [], 0, 0)])
        change = decode_batch(text)[0]
        self.assertEqual([column.value for column in change.new_values], values)
        self.assertEqual(math.copysign(1, change.new_values[8].value.value), -1)
        nan = decode_batch(batch_text([("T", ["Id"], ["x"])], [("", "", 1)],
                                      [(0, ChangeKind.UPDATE, [Value_Int64(1)], [(0, Value_Float64(math.nan))], [], 0, 0)]))
        self.assertTrue(math.isnan(sdk.as_f64(sdk.new_value(nan[0], "x"))))

    def test_row_json_of_reads_the_text_as_to_json_reads_values(self):
        values = [
            Value_Null(), Value_Bool(True), Value_Int64(-(1 << 63)), Value_Float32(f32(0.1)),
            Value_Float32(math.inf), Value_Float64(0.1), Value_Float64(math.nan), Value_String("é\n"),
            Value_Bytes(b"\x00\xff"), Value_Timestamp("2024-01-02T03:04:05Z"), Value_Date("2024-01-02"),
            Value_Numeric("1.50"), Value_Json('{"b":[1,2.5]}'), Value_Json("not json"),
        ]
        names = [f"c{i:02}" for i in range(len(values))]
        text = batch_text([("T", ["Id", "c00"], names)], [("", "", 1)],
                          [(0, ChangeKind.INSERT, [Value_Int64(1), Value_String("key wins? no")],
                            list(enumerate(values)), [], 0, 0)])
        for int64_as_string in (False, True):
            decoded = decode_batch(text)[0]
            lazy = dumps(row_json_of(decoded, int64_as_string))
            named = RowChange(decoded.table, decoded.kind, decoded.keys, decoded.new_values, [], 1, "", 0, "")
            self.assertEqual(lazy, dumps(row_json_of(named, int64_as_string)))
        self.assertIn('"c00":null', lazy, "a later column of the same name wins")

    def test_names_are_shared_not_copied(self):
        changes = decode_batch(self.compact_batch())
        self.assertIs(changes[1].table, changes[2].table)
        self.assertIs(changes[1].new_values[1].name, changes[2].new_values[0].name)
        self.assertIs(changes[0].transaction_id, changes[1].transaction_id)

    def test_helpers_work_on_decoded_changes(self):
        c = decode_batch(self.compact_batch())[1]
        self.assertEqual(sdk.as_i64(sdk.key_value(c, "UserId")), 7)
        self.assertIsNone(sdk.key_value(c, "Name"))
        self.assertEqual(sdk.as_str(sdk.old_value(c, "Name")), "Ad")
        self.assertIsNone(sdk.old_value(c, "Score"))
        self.assertIsNone(sdk.new_value(c, "Email"))
        self.assertIsNone(sdk.new_value(c, "Nope"))
        self.assertEqual(sdk.as_f32(sdk.new_value(c, "Score")), f32(0.1))
        self.assertEqual(dumps(row_json_of(c)), '{"Name":"Ada","Score":0.1,"UserId":7}')

    def test_helpers_see_columns_a_plugin_replaced(self):
        c = decode_batch(self.compact_batch())[1]
        c.new_values = [Column("Name", Value_String("Eve"))]
        c.keys = [Column("UserId", Value_Int64(9))]
        self.assertEqual(dumps(row_json_of(c)), '{"Name":"Eve","UserId":9}')
        self.assertEqual(sdk.as_str(sdk.new_value(c, "Name")), "Eve")
        self.assertEqual(sdk.as_i64(sdk.key_value(c, "UserId")), 9)

    def test_empty_batch(self):
        self.assertEqual(decode_batch(b"[[],[],[]]"), [])

    def test_a_decoded_change_takes_attributes_and_patterns_like_the_dataclass_it_was(self):
        c = decode_batch(self.compact_batch())[1]
        c.note = "plugin state"
        self.assertEqual(c.note, "plugin state")
        match c:
            case RowChange(table, kind, keys):
                self.assertEqual((table, kind, keys[0].name), ("Users", ChangeKind.UPDATE, "UserId"))
            case _:
                self.fail("positional pattern")

    def test_a_bad_value_read_in_on_change_names_the_change_once(self):
        class Reader(Plugin):
            def on_change(self, change):
                return [sdk.effect_set("k", dumps(row_json_of(change)))]

        world = register_plugin(Reader)()
        world.init()
        untagged = self.compact_batch().replace(b'"sAda"', b'"?Ada"')
        with self.assertRaises(Err) as caught:
            world.on_changes(untagged)
        self.assertEqual(caught.exception.value, "change 1 (table Users): '?Ada' is not a value of the batch text")

    def test_dangling_references_and_bad_text_are_errors(self):
        def with_change_1(**fields):
            tables, transactions, changes = self.parts()
            names = ["table", "kind", "keys", "new", "old", "tx", "seq"]
            changes[1] = tuple(fields.get(name, value) for name, value in zip(names, changes[1]))
            return batch_text(tables, transactions, changes)

        cases = [
            (with_change_1(table=2), "change 1: table 2 is not in the batch's 2 tables"),
            (with_change_1(table=-1), "change 1: table -1 is not in the batch's 2 tables"),
            (with_change_1(tx=5), "change 1: transaction 5 is not in the batch's 2 transactions"),
            (with_change_1(keys=[]), "change 1: 0 key values for the 1 key columns of table Users"),
            (b"[[],[],[[0]]]", "change 0: not enough values to unpack (expected 7, got 1)"),
            (b"not json", "the batch is not the JSON text of contract 0.4.0: Expecting value: line 1 column 1 (char 0)"),
        ]
        for text, message in cases:
            with self.assertRaises(Err) as caught:
                decode_batch(text)
            self.assertEqual(caught.exception.value, message)
        bad_kind = self.compact_batch().replace(b"[[1, 0, ", b"[[1, 7, ", 1)
        with self.assertRaises(Err) as caught:
            decode_batch(bad_kind)
        self.assertEqual(caught.exception.value, "change 0: kind 7 is not a change kind")

        # What the Rust and JavaScript readers refuse too: a kind or record
        # sequence that is no such number, a transaction of other than three
        # parts.
        def edited(edit):
            parts = json.loads(self.compact_batch())
            edit(parts)
            return json.dumps(parts).encode()

        def set_in(path, value):
            def edit(parts):
                at = parts
                for step in path[:-1]:
                    at = at[step]
                at[path[-1]] = value
            return edit

        cases = [
            (set_in([2, 0, 1], True), "change 0: kind True is not a change kind"),
            (set_in([2, 0, 6], -1), "change 0: record sequence -1 is not a number below 2^32"),
            (set_in([2, 0, 6], 1 << 32), "change 0: record sequence 4294967296 is not a number below 2^32"),
            (set_in([2, 0, 6], "0"), "change 0: record sequence '0' is not a number below 2^32"),
            (set_in([2, 0, 6], 1.0), "change 0: record sequence 1.0 is not a number below 2^32"),
            (lambda parts: parts[1][0].append(5), "the batch is not the JSON text of contract 0.4.0: "
             "too many values to unpack (expected 3)"),
            (lambda parts: parts[1][0].pop(), "the batch is not the JSON text of contract 0.4.0: "
             "not enough values to unpack (expected 3, got 2)"),
            (set_in([1, 0, 2], 5), "the batch is not the JSON text of contract 0.4.0: "
             "commit micros 5 is not a decimal text"),
        ]
        for edit, message in cases:
            with self.assertRaises(Err, msg=message) as caught:
                decode_batch(edited(edit))
            self.assertEqual(caught.exception.value, message)

    def test_bad_cells_are_errors_naming_the_column_or_value(self):
        for new, message in [
            ([(0, Value_Null()), (3, Value_Null())], "column 3 is not in table Users's 3 columns"),
            ([(0, Value_Null()), (-1, Value_Null())], "column -1 is not in table Users's 3 columns"),
        ]:
            tables, transactions, changes = self.parts()
            changes[1] = changes[1][:3] + (new,) + changes[1][4:]
            change = decode_batch(batch_text(tables, transactions, changes))[1]
            for read in (lambda: change.new_values, lambda: row_json_of(change)):
                with self.assertRaises(Err) as caught:
                    read()
                self.assertEqual(caught.exception.value, message)
        for bad_int in (b'"i"', b'"ix"'):
            change = decode_batch(self.compact_batch().replace(b'"i7"', bad_int, 1))[0]
            with self.assertRaises(Err) as caught:
                row_json_of(change)
            self.assertEqual(caught.exception.value, f"{bad_int.decode()[1:-1]!r} is not a value of the batch text")
        untagged = self.compact_batch().replace(b'"sAda"', b'"?Ada"')
        self.assertIn(b'"?Ada"', untagged)
        change = decode_batch(untagged)[1]
        for read in (lambda: change.new_values, lambda: row_json_of(change), lambda: sdk.new_value(change, "Name")):
            with self.assertRaises(Err) as caught:
                read()
            self.assertEqual(caught.exception.value, "'?Ada' is not a value of the batch text")

    def test_plugin_sees_the_decoded_list(self):
        class Recorder(Plugin):
            seen = None

            def on_changes(self, batch):
                Recorder.seen = batch
                return [sdk.delete(len(batch) - 1, "k")]

        world = register_plugin(Recorder)()
        world.init()
        self.assertEqual(world.on_changes(self.compact_batch()), [Action(2, Effect_Delete("k"))])
        self.assertEqual(Recorder.seen, decode_batch(self.compact_batch()))
        with self.assertRaises(Err) as caught:
            world.on_changes(b'[[],[],[[0,2,[],[],[],0,0]]]')
        self.assertEqual(caught.exception.value, "change 0: table 0 is not in the batch's 0 tables")


class NativeBenchTest(unittest.TestCase):
    def test_the_native_bench_of_the_example_prints_both_figures(self):
        import contextlib
        import io

        import bench_example_native

        out = io.StringIO()
        with mock.patch.object(bench_example_native, "ROUNDS", 1), contextlib.redirect_stdout(out):
            bench_example_native.main()
        lines = out.getvalue().splitlines()
        self.assertEqual([line.split(":")[0] for line in lines], ["decode_batch", "on-changes"])
        self.assertTrue(all(line.endswith("µs per record") for line in lines), lines)


class GoldenBatchTextTest(unittest.TestCase):
    """The batch text as the host writes it (tests/fixtures/conformance/
    batch-text.json, checked against the host by a Rust test)."""

    def test_every_value_of_the_host_text_reads_exactly(self):
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "../../tests/fixtures/conformance/batch-text.json")
        with open(path, encoding="utf-8") as f:
            golden = json.load(f)
        [change] = decode_batch(golden["text"].encode())
        self.assertEqual(change.commit_micros, int(golden["commit_micros"]))
        self.assertEqual(change.kind, ChangeKind.SNAPSHOT)
        classes = {
            "null": Value_Null, "bool": Value_Bool, "int64": Value_Int64, "float64": Value_Float64,
            "float32": Value_Float32, "string": Value_String, "bytes": Value_Bytes,
            "timestamp": Value_Timestamp, "date": Value_Date, "numeric": Value_Numeric, "json": Value_Json,
        }
        self.assertEqual(len(change.new_values), len(golden["new_values"]))
        for column, expected in zip(change.new_values, golden["new_values"]):
            value = column.value
            self.assertIs(type(value), classes[expected["type"]], column.name)
            if "bits" in expected:
                self.assertEqual(struct.pack(">d", value.value).hex(), expected["bits"], column.name)
            elif expected["type"] == "int64":
                self.assertEqual(value.value, int(expected["value"]), column.name)
            elif expected["type"] == "bytes":
                self.assertEqual(value.value, bytes(expected["value"]), column.name)
            elif "value" in expected:
                self.assertEqual(value.value, expected["value"], column.name)
        # The lazy JSON of the same text is the named one's, and so are its
        # bytes, however they are asked for.
        for int64_as_string in (False, True):
            named = dumps(row_json(change.keys + change.new_values, int64_as_string))
            [lazy] = decode_batch(golden["text"].encode())
            self.assertEqual(dumps(row_json_of(lazy, int64_as_string)), named)
            [lazy] = decode_batch(golden["text"].encode())
            self.assertEqual(sdk.row_json_bytes(lazy, int64_as_string), named.encode())
            self.assertEqual(sdk.row_json_bytes(change, int64_as_string), named.encode())

    def test_row_json_bytes_of_a_plain_row_is_what_dumps_writes(self):
        text = batch_text(
            [("T", ["Id"], ["s", "b", "n", "big"])], [("", "", 1)],
            [(0, ChangeKind.INSERT, [Value_Int64(7)],
              [(0, Value_String('é"\n')), (1, Value_Bool(False)), (2, Value_Null()),
               (3, Value_Int64(-(1 << 63)))], [], 0, 0)],
        )
        [change] = decode_batch(text)
        self.assertEqual(sdk.row_json_bytes(change), dumps(row_json_of(decode_batch(text)[0])).encode())
        self.assertEqual(
            sdk.row_json_bytes(change).decode(),
            '{"Id":7,"b":false,"big":-9223372036854775808,"n":null,"s":"é\\"\\n"}',
        )


    def test_flat_rows_are_written_from_their_text_as_dumps_writes_them(self):
        """Rows of strings, INT64s, BOOLs and NULLs under distinct names are
        written from the values' text with a member order made once per
        table and column order; every row gives dumps' bytes, whichever path
        writes it (BYTES and repeated names take the general one)."""
        rng = random.Random(16)
        names = ["a", "B", "é", "\U0001F600", 'q"', "k", "a\n", "Id", ""]
        texts = ["", "plain", 'quote"back\\slash', "\x00\x1f\x7f", "é\u2028😀"]

        def value():
            pick = rng.randrange(7)
            if pick == 0:
                return Value_Int64(rng.choice([0, 7, -7, 1 << 62, -(1 << 63), (1 << 63) - 1]))
            if pick == 1:
                return Value_Bool(rng.random() < 0.5)
            if pick == 2:
                return Value_Null()
            if pick == 3:
                return rng.choice([Value_Timestamp, Value_Date, Value_Numeric])(rng.choice(texts))
            if pick == 4:
                return Value_Bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(4))))
            return Value_String(rng.choice(texts))

        flat = 0
        for _ in range(300):
            columns = rng.sample(names, rng.randrange(1, len(names)))
            keys = rng.sample(names, rng.randrange(1, 3))
            changes = []
            for _ in range(rng.randrange(1, 5)):
                # Repeated columns and a column named as a key: later wins.
                cells = [(rng.randrange(len(columns)), value()) for _ in range(rng.randrange(6))]
                changes.append((0, ChangeKind.INSERT, [value() for _ in keys], cells, [], 0, 0))
            text = batch_text([("T", keys, columns)], [("", "", 1)], changes)
            for int64_as_string in (False, True):
                for lazy, named in zip(decode_batch(text), decode_batch(text)):
                    columns = named.keys + named.new_values
                    takes_it = len({c.name for c in columns}) == len(columns) and not any(
                        isinstance(c.value, Value_Bytes) for c in columns)
                    written = sdk._flat_row_text(lazy._wire, int64_as_string)
                    self.assertEqual(written is not None, takes_it, columns)
                    flat += written is not None
                    expected = dumps(row_json(columns, int64_as_string))
                    self.assertEqual(sdk.row_json_bytes(lazy, int64_as_string), expected.encode())
        self.assertGreater(flat, 200)

    def test_rows_the_flat_writer_leaves_take_the_general_path(self):
        def change(keys, cells):
            text = json.dumps([[["T", ["Id"], ["a", "b"]]], [["", "", "1"]],
                               [[0, 0, keys, cells, [], 0, 0]]]).encode()
            return decode_batch(text)[0]

        # A float, a JSON document, BYTES, and INT64s in forms Python writes
        # otherwise: the named path's bytes, with INT64s as text too.
        for raw, written, as_text in (
            ("f0.5", "0.5", "0.5"), ('j{"b":1}', '{"b":1}', '{"b":1}'),
            ("bQQ==", '"QQ=="', '"QQ=="'), ("bQR==", '"QQ=="', '"QQ=="'), ("i007", "7", '"7"'), ("i-0", "0", '"0"'),
            ("i+1", "1", '"1"'),
        ):
            for int64_as_string, expected in ((False, written), (True, as_text)):
                lazy = change(["i1"], [0, raw])
                self.assertIsNone(sdk._flat_row_text(lazy._wire, int64_as_string), raw)
                id_text = '"1"' if int64_as_string else "1"
                self.assertEqual(sdk.row_json_bytes(lazy, int64_as_string),
                                 ('{"Id":%s,"a":%s}' % (id_text, expected)).encode(), raw)
        # Malformed: a cell outside its table, a value a repeated name hides,
        # BYTES that are not base64, an INT64 past any INT64's digits (which
        # `int` refuses), as text too.
        for keys, cells in (
            (["i1"], [5, "sx"]), (["i1"], [0, "x1", 0, "sx"]), (["i1"], [0, "b!!"]), (["i" + "1" * 5000], []), (["i1"], [0, "i" + "1" * 5000]),
        ):
            for int64_as_string in (False, True):
                lazy = change(keys, cells)
                self.assertIsNone(sdk._flat_row_text(lazy._wire, int64_as_string), cells)
                with self.assertRaises(Err, msg=cells):
                    sdk.row_json_bytes(lazy, int64_as_string)
        # Odd cells (a column without its value) are refused as the Rust
        # and JavaScript readers refuse them, not read short.
        text = json.dumps([[["T", ["Id"], ["a", "b"]]], [["", "", "1"]],
                           [[0, 0, ["i1"], [0, "sx", 1, "sy"], [], 0, 0],
                            [0, 0, ["i1"], [0, "sx", 1], [], 0, 0]]]).encode()
        with self.assertRaises(Err) as caught:
            decode_batch(text)
        self.assertEqual(caught.exception.value, "change 1: cells of odd length: a column without its value")


class Float32Test(unittest.TestCase):
    """Expected text: Rust's `f32` Display, read as f64, written by serde_json."""

    def text(self, value):
        return dumps(to_json(Value_Float32(value)))

    def test_shortest_decimal_that_reads_back(self):
        cases = [
            (f32(0.1), "0.1"),
            (f32(1 / 3), "0.33333334"),
            (16777216.0, "16777216.0"),
            (f32_bits(0x7F7FFFFF), "3.4028235e+38"),  # largest float32
            (f32_bits(1), "1e-45"),  # smallest subnormal, 1.401298464324817e-45
            (f32_bits(0x007FFFFF), "1.1754942e-38"),  # largest subnormal
            (f32_bits(0x00800000), "1.1754944e-38"),  # smallest normal
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (1e10, "10000000000.0"),
            (f32(123456.79), "123456.79"),
            (f32(-2.5), "-2.5"),
            (f32(0.3), "0.3"),
            (f32(1e-7), "1e-7"),
            (f32(1e16), "1e+16"),
            (f32(1.5e-7), "1.5e-7"),
        ]
        for value, text in cases:
            self.assertEqual(self.text(value), text, repr(value))

    def test_ties_round_up_like_rust(self):
        # Exactly halfway between two equally short decimals that both read
        # back: Rust prints the upper one ('%.8g' would round to even).
        self.assertEqual(self.text(1048576.25), "1048576.3")
        self.assertEqual(self.text(-1048576.25), "-1048576.3")
        self.assertEqual(self.text(2.0**-12), "0.00024414063")
        self.assertEqual(self.text(189795.625), "189795.63")

    def test_powers_of_two_have_a_closer_lower_neighbour(self):
        # The shortest decimal lies above: the interval below is half as wide.
        self.assertEqual(self.text(2.0**-96), "1.2621775e-29")
        self.assertEqual(self.text(f32_bits(0x6B000000)), "1.5474251e+26")
        self.assertEqual(self.text(f32_bits(0x6C800000)), "1.2379401e+27")

    def test_values_are_rounded_to_float32_first(self):
        self.assertEqual(self.text(0.1), "0.1")
        self.assertEqual(self.text(1e300), '"Infinity"')

    def test_non_finite_become_strings(self):
        self.assertEqual(to_json(Value_Float32(math.nan)), "NaN")
        self.assertEqual(to_json(Value_Float32(math.inf)), "Infinity")
        self.assertEqual(to_json(Value_Float32(-math.inf)), "-Infinity")

    def test_text_and_rows(self):
        self.assertEqual(sdk.to_text(Value_Float32(f32(0.1))), "0.1")
        self.assertEqual(sdk.to_text(Value_Float32(math.nan)), "NaN")
        row = row_json([Column("A", Value_Float32(f32(1 / 3))), Column("B", Value_Float64(f32(1 / 3)))])
        self.assertEqual(dumps(row), '{"A":0.33333334,"B":0.3333333432674408}')

    def test_accessors(self):
        self.assertEqual(sdk.as_f32(Value_Float32(1.5)), 1.5)
        self.assertIsNone(sdk.as_f32(Value_Float64(1.5)))
        self.assertIsNone(sdk.as_f32(None))
        self.assertEqual(sdk.as_f64(Value_Float32(f32(0.1))), 0.10000000149011612)
        self.assertEqual(sdk.as_f64(Value_Float64(0.1)), 0.1)
        self.assertIsNone(sdk.as_f64(Value_Int64(1)))

    def test_every_exponent_reads_back(self):
        # The printed decimal reads back as the same float32, and one digit
        # fewer never would.
        for bits in [e << 23 | m for e in range(0, 255) for m in (0, 1, 0x7FFFFF, 0x2AAAAA)]:
            value = f32_bits(bits)
            if value == 0.0:
                continue
            digits, exponent = sdk._f32_shortest(value)
            self.assertEqual(f32(float(f"{digits}e{exponent}")), value, hex(bits))
            self.assertNotEqual(digits % 10, 0, hex(bits))


class CacheEventTest(unittest.TestCase):
    class Refresher(Plugin):
        """Refreshes users:N; fails on key bad, breaks on key bug."""

        def on_cache_event(self, e):
            if e.key == "bad":
                raise Err("no good")
            if e.key == "bug":
                raise KeyError("oops")
            if e.key.startswith("users:"):
                return [sdk.refresh("Users", [("UserId", Value_Int64(int(e.key[6:])))])]
            return []

    def test_default_on_cache_events_tags_effects_with_event_index(self):
        actions = self.Refresher().on_cache_events([event("users:1"), event("other"), event("users:2")])
        self.assertEqual(actions, [
            CacheAction(0, CacheEffect_Refresh(Refresh("Users", [Column("UserId", Value_Int64(1))]))),
            CacheAction(2, CacheEffect_Refresh(Refresh("Users", [Column("UserId", Value_Int64(2))]))),
        ])

    def test_default_on_cache_events_names_the_failing_event(self):
        with self.assertRaises(Err) as caught:
            self.Refresher().on_cache_events([event("users:1"), event("bad")])
        self.assertEqual(caught.exception.value, "event 1 (key bad): no good")
        with self.assertRaises(Err) as caught:
            self.Refresher().on_cache_events([event("bug")])
        self.assertRegex(caught.exception.value, r"^event 0 \(key bug\): KeyError: 'oops' at .*:\d+$")

    def test_default_on_cache_event_ignores_everything(self):
        self.assertEqual(Plugin().on_cache_events([event(), event(source=EventSource.KEYSPACE)]), [])

    def test_registered_plugin_answers_events(self):
        world = register_plugin(self.Refresher)()
        world.init()
        self.assertEqual(world.on_cache_events([event("users:9")]), [
            CacheAction(0, CacheEffect_Refresh(Refresh("Users", [Column("UserId", Value_Int64(9))]))),
        ])
        with self.assertRaises(Err) as caught:
            world.on_cache_events([event("bad")])
        self.assertEqual(caught.exception.value, "event 0 (key bad): no good")

    def test_refresh(self):
        keys = [("UserId", Value_Int64(7)), ("OrderId", Value_String("a"))]
        expected = CacheEffect_Refresh(Refresh("Orders", [Column("UserId", Value_Int64(7)),
                                                          Column("OrderId", Value_String("a"))]))
        self.assertEqual(sdk.refresh("Orders", keys), expected)
        self.assertEqual(sdk.refresh("Orders", dict(keys)), expected)
        self.assertEqual(sdk.refresh("Orders", iter(keys)), expected)
        self.assertEqual(sdk.refresh("T", []), CacheEffect_Refresh(Refresh("T", [])))
        with self.assertRaises(TypeError):
            sdk.refresh("Users", [("UserId", 42)])
        with self.assertRaises(TypeError):
            sdk.refresh("Users", [(1, Value_Int64(42))])
        with self.assertRaises(TypeError):
            sdk.refresh(None, [])

    def test_field(self):
        e = event(fields=[("reason", "ttl"), ("by", "api"), ("reason", "second")])
        self.assertEqual(sdk.field(e, "reason"), "ttl")
        self.assertEqual(sdk.field(e, "by"), "api")
        self.assertIsNone(sdk.field(e, "missing"))
        self.assertIsNone(sdk.field(event(source=EventSource.KEYSPACE), "reason"))


class CryptoTest(unittest.TestCase):
    def test_no_keyring_outside_the_host(self):
        with self.assertRaises(Err) as caught:
            sdk.seal("pii", b"secret", b"users:1")
        self.assertEqual(caught.exception.value, 'seal with key "pii": no keyring outside the host')
        with self.assertRaises(Err) as caught:
            sdk.keyed_hash("pii", "ada@example.com")
        self.assertEqual(caught.exception.value, 'keyed-hash with key "pii": no keyring outside the host')
        with self.assertRaises(Err) as caught:
            sdk.seal('a"b\\c\n', b"", b"")
        self.assertEqual(caught.exception.value, 'seal with key "a\\"b\\\\c\\n": no keyring outside the host')

    def test_arguments_are_bytes_or_text(self):
        with self.assertRaises(TypeError):
            sdk.seal("pii", 42, b"")
        with self.assertRaises(TypeError):
            sdk.seal("pii", b"", None)
        with self.assertRaises(TypeError):
            sdk.keyed_hash("pii", 1.5)


class UsersCacheTest(unittest.TestCase):
    """The example plugin, plugins/users-cache-py/app.py."""

    @classmethod
    def setUpClass(cls):
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path.insert(0, os.path.join(here, "..", "..", "plugins", "users-cache-py"))
        import app

        cls.app = app
        cls.world = app.WitWorld()
        cls.world.init()

    def test_plan(self):
        uid = [Column("UserId", Value_Int64(42))]
        batch = encode_batch([
            change(kind=ChangeKind.INSERT, keys=uid, new_values=[Column("Name", Value_String("Ada")),
                                                                 Column("Score", Value_Float64(1e16)),
                                                                 Column("Ratio", Value_Float32(f32(0.1)))]),
            change(table="Orders", keys=uid),
            change(kind=ChangeKind.DELETE, keys=uid),
        ])
        self.assertEqual(self.world.on_changes(batch), [
            Action(0, Effect_Set(Write("users:42", b'{"Name":"Ada","Ratio":0.1,"Score":1e+16,"UserId":42}', None))),
            Action(2, Effect_Delete("users:42")),
        ])

    def test_missing_user_id(self):
        with self.assertRaises(Err) as caught:
            self.world.on_changes(encode_batch([change(keys=[Column("UserId", Value_String("42"))])]))
        self.assertEqual(caught.exception.value, "change 0 (table Users): Users row without an INT64 UserId")

    def refreshes(self, *user_ids):
        return [CacheEffect_Refresh(Refresh("Users", [Column("UserId", Value_Int64(i))])) for i in user_ids]

    def test_misses_refresh_the_user(self):
        events = [event("users:42"), event("users:42", kind="evicted"), event("orders:1"), event("users:-7")]
        self.assertEqual(self.world.on_cache_events(events), [
            CacheAction(0, self.refreshes(42)[0]),
            CacheAction(3, self.refreshes(-7)[0]),
        ])

    def test_only_keys_with_a_decimal_int64(self):
        plugin = self.app.UsersCache()
        plugin.init()
        accepted = {"users:+5": 5, "users:007": 7, "users:9223372036854775807": 2**63 - 1,
                    "users:-9223372036854775808": -(2**63)}
        for k, user_id in accepted.items():
            self.assertEqual(plugin.on_cache_event(event(k)), self.refreshes(user_id), k)
        for k in ["users:", "users:abc", "users:1.5", "users: 1", "users:1 ", "users:42\n", "users:1_000",
                  "users:\u0661", "users:9223372036854775808", "users:-9223372036854775809", "users:+",
                  "users:--1", "Users:1", "users:1:2"]:
            self.assertEqual(plugin.on_cache_event(event(k)), [], repr(k))

    def test_refresh_on_setting(self):
        cases = {None: ["miss"], "": [], " miss , evicted,,": ["miss", "evicted"], "expired": ["expired"]}
        for setting, kinds in cases.items():
            with mock.patch.object(self.app, "config", return_value=setting):
                plugin = self.app.UsersCache()
                plugin.init()
            self.assertEqual(plugin.refresh_on, kinds, repr(setting))
        self.assertEqual(plugin.on_cache_event(event("users:1")), [])
        self.assertEqual(plugin.on_cache_event(event("users:1", kind="expired")), self.refreshes(1))


if __name__ == "__main__":
    unittest.main()

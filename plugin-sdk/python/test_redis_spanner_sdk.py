"""Unit tests of redis_spanner_sdk on plain CPython.

    cd plugin-sdk/python && python3 -m unittest

The expected strings are what the Rust SDK (serde_json 1.0.154) produces.
"""

import math
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import redis_spanner_sdk as sdk  # noqa: E402
from redis_spanner_sdk import (  # noqa: E402
    Action,
    ChangeKind,
    Column,
    Effect_Delete,
    Effect_Expire,
    Effect_Set,
    Err,
    Expiry,
    Plugin,
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
        record_sequence="00000000",
        transaction_tag="",
    )


def json_text(text):
    """dumps(to_json(json column)), as the Rust SDK writes a JSON column."""
    return dumps(to_json(Value_Json(text)))


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


class ToJsonTest(unittest.TestCase):
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
            instance.on_changes([change("T", tx="a")])
        self.assertEqual(caught.exception.value, "on-changes was called before init succeeded")
        instance.init()
        self.assertEqual(instance.on_changes([change("T", tx="a")]), [Action(0, Effect_Delete("a"))])

    def test_init_errors(self):
        class Failing(Plugin):
            def init(self):
                raise Err("set prefix in the manifest")

        with self.assertRaises(Err) as caught:
            register_plugin(Failing)().init()
        self.assertEqual(caught.exception.value, "set prefix in the manifest")

    def test_config_and_log_outside_wasm(self):
        self.assertFalse(sdk.IN_WASM)
        self.assertIsNone(sdk.config("prefix"))
        sdk.log(sdk.LogLevel.DEBUG, "hello from the tests")


class UsersCacheTest(unittest.TestCase):
    """The example plugin, plugins/users-cache-py/app.py."""

    @classmethod
    def setUpClass(cls):
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path.insert(0, os.path.join(here, "..", "..", "plugins", "users-cache-py"))
        import app

        cls.world = app.WitWorld()
        cls.world.init()

    def test_plan(self):
        uid = [Column("UserId", Value_Int64(42))]
        batch = [
            change(kind=ChangeKind.INSERT, keys=uid, new_values=[Column("Name", Value_String("Ada")),
                                                                 Column("Score", Value_Float64(1e16))]),
            change(table="Orders", keys=uid),
            change(kind=ChangeKind.DELETE, keys=uid),
        ]
        self.assertEqual(self.world.on_changes(batch), [
            Action(0, Effect_Set(Write("users:42", b'{"Name":"Ada","Score":1e+16,"UserId":42}', None))),
            Action(2, Effect_Delete("users:42")),
        ])

    def test_missing_user_id(self):
        with self.assertRaises(Err) as caught:
            self.world.on_changes([change(keys=[Column("UserId", Value_String("42"))])])
        self.assertEqual(caught.exception.value, "change 0 (table Users): Users row without an INT64 UserId")


if __name__ == "__main__":
    unittest.main()

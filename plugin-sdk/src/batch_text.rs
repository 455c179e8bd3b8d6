//! The batch text of contract 0.4.0 (`docs/BATCH-TEXT.md`: the JSON text of
//! the compact batch, tables and transactions once, values by position)
//! read straight into [`RowChange`]s with names, in one pass and without a
//! JSON tree in between. [`decode_into`] refills the changes of the last
//! batch, so a plugin's batches reuse their strings and lists instead of
//! allocating each name and value anew.

use std::borrow::Cow;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{GeneralPurpose, GeneralPurposeConfig};

use crate::{ChangeKind, Column, RowChange, Value};

/// The changes of a batch text, in order, with table and column names (the
/// tests' way to [`decode_into`] a fresh list).
#[cfg(test)]
pub fn decode(text: &[u8]) -> Result<Vec<RowChange>, String> {
    let mut changes = Vec::new();
    decode_into(text, &mut changes).map(|()| changes)
}

/// Reads a batch text into `changes`, reusing the strings and lists of the
/// changes it holds (from the last batch) and leaving exactly the batch's
/// changes. On an error `changes` holds no meaningful batch.
///
/// # Errors
///
/// When the text is not the batch text (a host bug): the message names the
/// change and the byte where reading stopped.
pub fn decode_into(text: &[u8], changes: &mut Vec<RowChange>) -> Result<(), String> {
    // Checked once here, so that each string is a slice of it.
    let whole = std::str::from_utf8(text).map_err(|error| {
        format!(
            "the batch text is not UTF-8 at byte {}",
            error.valid_up_to()
        )
    })?;
    let mut reader = Reader { text, whole, at: 0 };
    let read = reader.batch(changes);
    read.map_err(|what| format!("the batch text is malformed at byte {}: {what}", reader.at))
}

/// BYTES as the Python and JavaScript SDKs read them: standard base64 with
/// its padding, bits past the last byte ignored (the host writes them zero).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
);

/// A table's names, as the batch lists them once.
struct TableNames {
    name: String,
    key_columns: Vec<String>,
    columns: Vec<String>,
}

/// A transaction, as the batch lists it once.
struct Transaction {
    id: String,
    tag: String,
    commit_micros: i64,
}

/// Reads the text from `at` on.
struct Reader<'a> {
    /// The text's bytes.
    text: &'a [u8],
    /// The same text, known to be UTF-8.
    whole: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn batch(&mut self, changes: &mut Vec<RowChange>) -> Result<(), String> {
        self.expect(b'[')?;
        let mut tables = Vec::new();
        self.list(|reader| {
            tables.push(reader.table()?);
            Ok(())
        })?;
        self.expect(b',')?;
        let mut transactions = Vec::new();
        self.list(|reader| {
            transactions.push(reader.transaction()?);
            Ok(())
        })?;
        self.expect(b',')?;
        let mut count = 0;
        self.list(|reader| {
            if count == changes.len() {
                changes.push(empty_change());
            }
            reader
                .change(&tables, &transactions, &mut changes[count])
                .map_err(|what| format!("change {count}: {what}"))?;
            count += 1;
            Ok(())
        })?;
        changes.truncate(count);
        self.expect(b']')?;
        self.skip_space();
        if self.at != self.text.len() {
            return Err("text after the batch".into());
        }
        Ok(())
    }

    fn table(&mut self) -> Result<TableNames, String> {
        self.expect(b'[')?;
        let name = self.string()?.into_owned();
        self.expect(b',')?;
        let key_columns = self.names()?;
        self.expect(b',')?;
        let columns = self.names()?;
        self.expect(b']')?;
        Ok(TableNames {
            name,
            key_columns,
            columns,
        })
    }

    fn transaction(&mut self) -> Result<Transaction, String> {
        self.expect(b'[')?;
        let id = self.string()?.into_owned();
        self.expect(b',')?;
        let tag = self.string()?.into_owned();
        self.expect(b',')?;
        let micros = self.string()?;
        let commit_micros =
            int64(&micros).ok_or_else(|| format!("commit micros {micros:?} is not an INT64"))?;
        self.expect(b']')?;
        Ok(Transaction {
            id,
            tag,
            commit_micros,
        })
    }

    /// Reads a change into `slot`, reusing its strings and lists.
    fn change(
        &mut self,
        tables: &[TableNames],
        transactions: &[Transaction],
        slot: &mut RowChange,
    ) -> Result<(), String> {
        self.expect(b'[')?;
        let table = tables
            .get(self.index()?)
            .ok_or("table out of range in the batch")?;
        self.expect(b',')?;
        slot.kind = match self.number()? {
            0 => ChangeKind::Insert,
            1 => ChangeKind::Update,
            2 => ChangeKind::Delete,
            3 => ChangeKind::Snapshot,
            other => return Err(format!("kind {other} is not 0 to 3")),
        };
        self.expect(b',')?;
        let mut count = 0;
        self.list(|reader| {
            let name = table
                .key_columns
                .get(count)
                .ok_or("key count out of range in the batch")?;
            reader.column_into(&mut slot.keys, count, name)?;
            count += 1;
            Ok(())
        })?;
        if count != table.key_columns.len() {
            return Err("key count out of range in the batch".into());
        }
        slot.keys.truncate(count);
        self.expect(b',')?;
        self.cells_into(table, &mut slot.new_values)?;
        self.expect(b',')?;
        self.cells_into(table, &mut slot.old_values)?;
        self.expect(b',')?;
        let transaction = transactions
            .get(self.index()?)
            .ok_or("transaction out of range in the batch")?;
        self.expect(b',')?;
        slot.record_sequence =
            u32::try_from(self.number()?).map_err(|_| "record sequence not below 2^32")?;
        self.expect(b']')?;
        refill(&mut slot.table, &table.name);
        slot.commit_micros = transaction.commit_micros;
        refill(&mut slot.transaction_id, &transaction.id);
        refill(&mut slot.transaction_tag, &transaction.tag);
        Ok(())
    }

    /// `[column, value, column, value, …]` into `columns` as named columns
    /// of `table`, reusing the columns there. Each `column, value` pair is
    /// one item of the list.
    fn cells_into(&mut self, table: &TableNames, columns: &mut Vec<Column>) -> Result<(), String> {
        let mut count = 0;
        self.list(|reader| {
            let name = table
                .columns
                .get(reader.index()?)
                .ok_or("column out of range in the batch")?;
            reader.expect(b',')?;
            reader.column_into(columns, count, name)?;
            count += 1;
            Ok(())
        })?;
        columns.truncate(count);
        Ok(())
    }

    /// Reads a value as column `at` of `columns`, named `name`, reusing the
    /// column there or adding one.
    fn column_into(
        &mut self,
        columns: &mut Vec<Column>,
        at: usize,
        name: &str,
    ) -> Result<(), String> {
        if at == columns.len() {
            columns.push(Column {
                name: String::new(),
                value: Value::Null,
            });
        }
        let column = &mut columns[at];
        refill(&mut column.name, name);
        self.value_into(&mut column.value)
    }

    /// `null`, `true`, `false`, or a string whose first character names
    /// the type, into `slot` (its text or bytes buffer reused).
    fn value_into(&mut self, slot: &mut Value) -> Result<(), String> {
        self.skip_space();
        let word: (&[u8], Value) = match self.text.get(self.at) {
            Some(b'n') => (b"null", Value::Null),
            Some(b't') => (b"true", Value::Bool(true)),
            Some(b'f') => (b"false", Value::Bool(false)),
            _ => (b"", Value::Null),
        };
        if !word.0.is_empty() && self.text[self.at..].starts_with(word.0) {
            self.at += word.0.len();
            *slot = word.1;
            return Ok(());
        }
        let text = self.string()?;
        let mut chars = text.chars();
        let tag = chars.next().ok_or("a value without a type tag")?;
        let rest = chars.as_str();
        match tag {
            'i' => {
                *slot = Value::Int64(
                    int64(rest).ok_or_else(|| format!("INT64 {rest:?} is not a decimal INT64"))?,
                )
            }
            'f' => *slot = Value::Float64(float(rest)?),
            // The double of the very same FLOAT32: narrowing is exact.
            'g' => {
                let double = float(rest)?;
                let single = double as f32;
                if f64::from(single) != double && !double.is_nan() {
                    return Err(format!("FLOAT32 {rest:?} is not a FLOAT32's value"));
                }
                *slot = Value::Float32(single);
            }
            's' => text_into(slot, rest, Value::String),
            't' => text_into(slot, rest, Value::Timestamp),
            'd' => text_into(slot, rest, Value::Date),
            'n' => text_into(slot, rest, Value::Numeric),
            'j' => text_into(slot, rest, Value::Json),
            'b' => {
                let mut bytes = match std::mem::replace(slot, Value::Null) {
                    Value::Bytes(bytes) => bytes,
                    _ => Vec::new(),
                };
                bytes.clear();
                BASE64
                    .decode_vec(rest, &mut bytes)
                    .map_err(|_| format!("BYTES {rest:?} is not base64"))?;
                *slot = Value::Bytes(bytes);
            }
            other => return Err(format!("{other:?} is not a value's type tag")),
        }
        Ok(())
    }

    fn names(&mut self) -> Result<Vec<String>, String> {
        let mut names = Vec::new();
        self.list(|reader| {
            names.push(reader.string()?.into_owned());
            Ok(())
        })?;
        Ok(names)
    }

    /// `[item, item, …]`, each item read by `item`.
    fn list(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        self.expect(b'[')?;
        if self.eat(b']') {
            return Ok(());
        }
        loop {
            item(self)?;
            if self.eat(b']') {
                return Ok(());
            }
            self.expect(b',')?;
        }
    }

    /// A non-negative JSON integer (a kind, a record sequence) of at most
    /// 19 digits, which no `u64` overflows.
    fn number(&mut self) -> Result<u64, String> {
        self.skip_space();
        let start = self.at;
        let mut n: u64 = 0;
        while let Some(digit @ b'0'..=b'9') = self.text.get(self.at).copied() {
            if self.at - start == 19 {
                return Err("a number too large".into());
            }
            n = n * 10 + u64::from(digit - b'0');
            self.at += 1;
        }
        match self.at - start {
            0 => Err("expected a number".into()),
            1 => Ok(n),
            _ if self.text[start] == b'0' => Err("a number with a leading zero".into()),
            _ => Ok(n),
        }
    }

    /// A [`Reader::number`] used as an index into the batch's tables,
    /// transactions or a table's columns.
    fn index(&mut self) -> Result<usize, String> {
        usize::try_from(self.number()?).map_err(|_| "a number too large".into())
    }

    /// A JSON string's contents: borrowed from the text unless it holds
    /// escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, String> {
        self.expect(b'"')?;
        let start = self.at;
        let rest = &self.text[start..];
        let Some(end) = rest
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        else {
            return Err("a string without its closing quote".into());
        };
        if rest[end] < 0x20 {
            self.at = start + end;
            return Err("a control character not escaped in a string".into());
        }
        if rest[end] == b'"' {
            self.at = start + end + 1;
            // Quotes are ASCII, so both ends are character boundaries.
            return Ok(Cow::Borrowed(&self.whole[start..start + end]));
        }
        self.escaped_string(start).map(Cow::Owned)
    }

    /// A JSON string with escapes, from its first byte at `start`.
    fn escaped_string(&mut self, start: usize) -> Result<String, String> {
        let mut bytes = Vec::new();
        self.at = start;
        loop {
            match self.text.get(self.at).copied() {
                None => return Err("a string without its closing quote".into()),
                Some(b'"') => {
                    self.at += 1;
                    return String::from_utf8(bytes)
                        .map_err(|_| "a string that is not UTF-8".into());
                }
                Some(b'\\') => {
                    let Some(escaped) = self.text.get(self.at + 1).copied() else {
                        return Err("a string without its closing quote".into());
                    };
                    self.at += 2;
                    let plain = match escaped {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            let c = self.unicode_escape()?;
                            bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                            continue;
                        }
                        _ => return Err("an unknown escape in a string".into()),
                    };
                    bytes.push(plain);
                }
                Some(0..0x20) => {
                    return Err("a control character not escaped in a string".into());
                }
                Some(byte) => {
                    bytes.push(byte);
                    self.at += 1;
                }
            }
        }
    }

    /// The character of a `\uXXXX` escape (two for a surrogate pair), the
    /// `\u` already read.
    fn unicode_escape(&mut self) -> Result<char, String> {
        let high = self.hex4()?;
        if !(0xD800..0xDC00).contains(&high) {
            return char::from_u32(high).ok_or_else(|| "a lone low surrogate".into());
        }
        if self.text.get(self.at..self.at + 2) != Some(b"\\u") {
            return Err("a lone high surrogate".into());
        }
        self.at += 2;
        let low = self.hex4()?;
        if !(0xDC00..0xE000).contains(&low) {
            return Err("a high surrogate without its low one".into());
        }
        char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))
            .ok_or_else(|| "a bad surrogate pair".into())
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = self
            .text
            .get(self.at..self.at + 4)
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .filter(|digits| digits.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or("a \\u escape without four hex digits")?;
        self.at += 4;
        u32::from_str_radix(digits, 16).map_err(|_| "a bad \\u escape".into())
    }

    /// Reads `byte` (after any JSON white space) or fails naming it.
    fn expect(&mut self, byte: u8) -> Result<(), String> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(format!("expected {:?}", char::from(byte)))
        }
    }

    /// Reads `byte` if it comes next (after any JSON white space).
    fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        if self.text.get(self.at) == Some(&byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.text.get(self.at) {
            self.at += 1;
        }
    }
}

/// A change with nothing in it yet, for [`decode_into`] to fill.
fn empty_change() -> RowChange {
    RowChange {
        table: String::new(),
        kind: ChangeKind::Insert,
        keys: Vec::new(),
        new_values: Vec::new(),
        old_values: Vec::new(),
        commit_micros: 0,
        transaction_id: String::new(),
        record_sequence: 0,
        transaction_tag: String::new(),
    }
}

/// Sets `slot` to a text value `make` wraps, reusing the buffer of the
/// text value it held.
fn text_into(slot: &mut Value, text: &str, make: fn(String) -> Value) {
    let mut buffer = match std::mem::replace(slot, Value::Null) {
        Value::String(s)
        | Value::Timestamp(s)
        | Value::Date(s)
        | Value::Numeric(s)
        | Value::Json(s) => s,
        _ => String::new(),
    };
    refill(&mut buffer, text);
    *slot = make(buffer);
}

/// Sets `buffer` to `text`, keeping its allocation.
fn refill(buffer: &mut String, text: &str) {
    buffer.clear();
    buffer.push_str(text);
}

/// An INT64's decimal text (an optional `-` and digits). Up to 18 digits
/// cannot overflow, so they are read without the checks of `str::parse`.
fn int64(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes() {
        [b'-', digits @ ..] => (true, digits),
        digits => (false, digits),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits.len() > 18 {
        return text.parse().ok();
    }
    let magnitude = digits
        .iter()
        .fold(0i64, |n, digit| n * 10 + i64::from(digit - b'0'));
    Some(if negative { -magnitude } else { magnitude })
}

/// A float's text: a decimal, or `NaN`, `Infinity`, `-Infinity`.
fn float(text: &str) -> Result<f64, String> {
    match text {
        "NaN" => Ok(f64::NAN),
        "Infinity" => Ok(f64::INFINITY),
        "-Infinity" => Ok(f64::NEG_INFINITY),
        // Rust's parser also takes "inf" and "nan", which the text never
        // holds: only digits, a sign, a point and an exponent pass.
        _ if text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')) =>
        {
            text.parse()
                .map_err(|_| format!("float {text:?} is not a decimal"))
        }
        _ => Err(format!("float {text:?} is not a decimal")),
    }
}

#[cfg(test)]
mod tests {
    use super::{decode, decode_into};
    use crate::{ChangeKind, Value};
    use serde_json::Value as Json;

    #[test]
    fn names_come_back_from_the_batch_tables() {
        let text = br#"[[["Users",["UserId"],["Name","Score"]],["Orders",["A","B"],[]]],
            [["t1","app","42"]],
            [[0,1,["i7"],[1,"g0.5"],[0,"sAda"],0,3],[1,2,["i1",null],[],[],0,4]]]"#;
        let changes = decode(text).expect("decodes");
        assert_eq!(changes[0].table, "Users");
        assert_eq!(changes[0].kind, ChangeKind::Update);
        assert_eq!(changes[0].key("UserId"), Some(&Value::Int64(7)));
        assert_eq!(changes[0].new_value("Score"), Some(&Value::Float32(0.5)));
        assert_eq!(changes[0].new_value("Name"), None);
        assert_eq!(
            changes[0].old_value("Name"),
            Some(&Value::String("Ada".into()))
        );
        assert_eq!(changes[0].transaction_tag, "app");
        assert_eq!(
            (changes[0].commit_micros, changes[0].record_sequence),
            (42, 3)
        );
        assert_eq!(changes[1].table, "Orders");
        assert_eq!(changes[1].kind, ChangeKind::Delete);
        assert_eq!(changes[1].key("B"), Some(&Value::Null));
        assert_eq!(changes[1].transaction_id, "t1");
    }

    /// The host's golden text (`tests/fixtures/conformance/batch-text.json`,
    /// held equal to what the host writes by a host test): every value reads
    /// back exactly, float bits included.
    #[test]
    fn every_value_of_the_host_text_reads_exactly() {
        let golden: Json = serde_json::from_str(include_str!(
            "../../tests/fixtures/conformance/batch-text.json"
        ))
        .expect("golden file is JSON");
        let text = golden["text"].as_str().expect("text");
        let changes = decode(text.as_bytes()).expect("decodes");
        assert_eq!(changes.len(), 1);
        let change = &changes[0];
        assert_eq!(
            change.commit_micros.to_string(),
            golden["commit_micros"].as_str().expect("micros")
        );
        // What the golden text holds besides its values (see the host's
        // `golden()` in host/src/contract/batch_text.rs).
        assert_eq!(change.table, "Every");
        assert_eq!(change.kind, ChangeKind::Snapshot);
        assert_eq!(change.key("Id"), Some(&Value::Int64(i64::MIN)));
        assert_eq!(change.record_sequence, 7);
        assert_eq!(change.transaction_id, "");
        assert_eq!(change.transaction_tag, "tag\\");
        let expected = golden["new_values"].as_array().expect("values");
        assert_eq!(change.new_values.len(), expected.len());
        for (column, want) in change.new_values.iter().zip(expected) {
            let text = |v: &Json| v.as_str().expect("a string").to_owned();
            let bits =
                || u64::from_str_radix(want["bits"].as_str().expect("bits"), 16).expect("hex");
            let matches = match (want["type"].as_str().expect("type"), &column.value) {
                ("null", Value::Null) => true,
                ("bool", Value::Bool(b)) => want["value"] == Json::Bool(*b),
                ("int64", Value::Int64(i)) => i.to_string() == text(&want["value"]),
                ("float64", Value::Float64(f)) => f.to_bits() == bits(),
                ("float32", Value::Float32(f)) => f64::from(*f).to_bits() == bits(),
                ("string", Value::String(s))
                | ("timestamp", Value::Timestamp(s))
                | ("date", Value::Date(s))
                | ("numeric", Value::Numeric(s))
                | ("json", Value::Json(s)) => *s == text(&want["value"]),
                ("bytes", Value::Bytes(b)) => {
                    let want: Vec<u8> =
                        serde_json::from_value(want["value"].clone()).expect("bytes");
                    *b == want
                }
                _ => false,
            };
            assert!(
                matches,
                "column {}: {:?} is not {want}",
                column.name, column.value
            );
        }
    }

    /// Texts of every shape: more and fewer changes, columns and keys, and
    /// each value type in a slot another type held. (The test checks that
    /// a refilled batch is right; that it reuses buffers shows in `bench
    /// plugins`, not here.)
    const TEXTS: [&[u8]; 4] = [
        br#"[[["T",["K"],["A","B"]]],[["t1","tag","5"]],[[0,0,["sk"],[0,"sa",1,"b/w=="],[],0,1],[0,1,["i2"],[1,null],[0,"j[]"],0,2]]]"#,
        br#"[[["U",["X","Y"],["C"]]],[["","","-1"]],[[0,3,["b","t2024-01-01T00:00:00Z"],[0,"n1.5"],[],0,0]]]"#,
        br#"[[],[],[]]"#,
        br#"[[["V",["K"],["A","B","C"]]],[["t2","","7"],["t3","x","8"]],[[0,2,[true],[],[2,"d2024-02-29",0,"f0.5",1,"g0.25"],1,9],[0,0,["s"],[0,"s\u00e9"],[],0,0],[0,0,[null],[],[],1,1]]]"#,
    ];

    #[test]
    fn a_refilled_batch_is_the_batch_read_afresh() {
        let golden: Json = serde_json::from_str(include_str!(
            "../../tests/fixtures/conformance/batch-text.json"
        ))
        .expect("golden file is JSON");
        let golden = golden["text"].as_str().expect("text").as_bytes();
        let texts: Vec<&[u8]> = TEXTS.iter().copied().chain([golden]).collect();
        // By their Debug text, which tells -0.0 from 0.0 and takes NaN as
        // equal to itself.
        let read = |text: &[u8]| format!("{:?}", decode(text).expect("decodes"));
        for before in &texts {
            for after in &texts {
                let mut changes = decode(before).expect("decodes");
                decode_into(after, &mut changes).expect("decodes");
                assert_eq!(format!("{changes:?}"), read(after));
            }
        }
        // A batch that fails leaves nothing that spoils the next one.
        let mut changes = decode(TEXTS[0]).expect("decodes");
        assert!(
            decode_into(
                br#"[[["T",["K"],[]]],[],[[0,0,["sx"],[],[],0,0]]]"#,
                &mut changes
            )
            .is_err()
        );
        decode_into(TEXTS[3], &mut changes).expect("decodes");
        assert_eq!(changes, decode(TEXTS[3]).expect("decodes"));
    }

    #[test]
    fn int64_text_reads_as_str_parse_does() {
        for text in [
            "0",
            "-0",
            "7",
            "-42",
            "000123",
            "999999999999999999",
            "-999999999999999999",
            "1000000000000000000",
            "9223372036854775807",
            "-9223372036854775808",
        ] {
            assert_eq!(super::int64(text), text.parse().ok(), "{text}");
        }
    }

    #[test]
    fn bytes_read_as_the_python_and_javascript_sdks_read_them() {
        // Bits past the last byte are ignored, as CPython's b64decode and
        // the JavaScript SDK's reader ignore them; padding is required.
        let text = br#"[[["T",["K"],[]]],[["","","0"]],[[0,0,["bQR=="],[],[],0,0]]]"#;
        let changes = decode(text).expect("decodes");
        assert_eq!(changes[0].key("K"), Some(&Value::Bytes(vec![0x41])));
    }

    #[test]
    fn escapes_and_white_space_read_as_json_does() {
        let text = br#" [ [ [ "T\u00e9" , [ "K" ] , [ "a\"b" ] ] ] , [ [ "" , "" , "0" ] ] ,
            [ [ 0 , 0 , [ "s\ud83d\ude00\n\/" ] , [ 0 , "s\u2028\t\r\b\f\"\\" ] , [ ] , 0 , 0 ] ] ] "#;
        let changes = decode(text).expect("decodes");
        assert_eq!(changes[0].table, "Té");
        assert_eq!(changes[0].key("K"), Some(&Value::String("😀\n/".into())));
        assert_eq!(
            changes[0].new_value("a\"b"),
            Some(&Value::String("\u{2028}\t\r\u{8}\u{c}\"\\".into()))
        );
    }

    #[test]
    fn a_malformed_text_is_an_error_naming_the_change_and_byte() {
        let base = |change: &str| {
            format!(r#"[[["T",["K"],["A"]]],[["t","","1"]],[[0,0,["i1"],[],[],0,0],{change}]]"#)
        };
        // A change after a good one, and what its error says.
        let bad_changes = [
            (r#"[1,0,["i1"],[],[],0,0]"#, "change 1: table out of range"),
            (
                r#"[0,0,["i1"],[],[],1,0]"#,
                "change 1: transaction out of range",
            ),
            (
                r#"[0,0,["i1"],[5,null],[],0,0]"#,
                "change 1: column out of range",
            ),
            (r#"[0,0,[],[],[],0,0]"#, "change 1: key count"),
            (r#"[0,0,["i1","i2"],[],[],0,0]"#, "change 1: key count"),
            (r#"[0,4,["i1"],[],[],0,0]"#, "kind 4 is not 0 to 3"),
            (
                r#"[0,0,["i1"],[],[],0,4294967296]"#,
                "record sequence not below 2^32",
            ),
            (
                r#"[0,0,["i1"],[],[],0,99999999999999999999]"#,
                "number too large",
            ),
            (r#"[0,0,["i1"],[],[],00,0]"#, "leading zero"),
            ("[0,0,[\"s\u{1}\"],[],[],0,0]", "control character"),
            ("[0,0,[\"s\\\\n\u{1}\"],[],[],0,0]", "control character"),
            (r#"[0,0,["g1e300"],[],[],0,0]"#, "FLOAT32 \"1e300\""),
            (r#"[0,0,["g0.1"],[],[],0,0]"#, "FLOAT32 \"0.1\""),
            (r#"[0,0,["ix"],[],[],0,0]"#, "INT64 \"x\""),
            (r#"[0,0,["i"],[],[],0,0]"#, "is not a decimal INT64"),
            (r#"[0,0,["i-"],[],[],0,0]"#, "is not a decimal INT64"),
            (r#"[0,0,["i+5"],[],[],0,0]"#, "is not a decimal INT64"),
            (r#"[0,0,["i1.0"],[],[],0,0]"#, "is not a decimal INT64"),
            (
                r#"[0,0,["i9223372036854775808"],[],[],0,0]"#,
                "is not a decimal INT64",
            ),
            (
                r#"[0,0,["i-9223372036854775809"],[],[],0,0]"#,
                "is not a decimal INT64",
            ),
            (r#"[0,0,["finf"],[],[],0,0]"#, "float \"inf\""),
            (r#"[0,0,["b!"],[],[],0,0]"#, "BYTES \"!\""),
            (r#"[0,0,["bQQ"],[],[],0,0]"#, "BYTES \"QQ\""),
            (r#"[0,0,["q1"],[],[],0,0]"#, "'q' is not a value's type tag"),
            (r#"[0,0,[""],[],[],0,0]"#, "without a type tag"),
            (r#"[0,0,["i1"],[],[],0,0"#, "malformed at byte"),
            (r#"[0,0,["s\ud800"],[],[],0,0]"#, "lone high surrogate"),
        ];
        for (change, expected) in bad_changes {
            let error = decode(base(change).as_bytes()).expect_err(change);
            assert!(error.contains(expected), "{change}: {error}");
        }
        // Whole texts, and what their error says.
        let bad_texts: [(&[u8], &str); 4] = [
            (b"[[[\"T\\", "without its closing quote"),
            (b"[[],[],[]\xff]", "not UTF-8 at byte 9"),
            (b"[[],[],[]] x", "text after the batch"),
            (br#"[[],[["t","","x"]],[]]"#, "commit micros"),
        ];
        for (text, expected) in bad_texts {
            let error = decode(text).expect_err(expected);
            assert!(error.contains(expected), "{expected}: {error}");
        }
        assert_eq!(decode(b"[[],[],[]]"), Ok(Vec::new()));
    }
}

//! A batch of host [`RowChange`]s in contract 0.3.0's compact shape: each
//! table's column names and each transaction once, each change's values by
//! position. Plugins of 0.3.0 receive it as an owned record ([`encode`]),
//! plugins of 0.4.0 as the text [`super::batch_text`] writes from the same
//! borrowed [`layout`]; the SDKs turn it back into named columns.

use super::RowChange;
use super::latest::{Batch, Cell, ChangeKind, Column, Table, Transaction, Value};
use rustc_hash::FxHashMap;

/// Why a batch cannot be put in the compact shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A record sequence is not a decimal number that fits 32 bits.
    #[error(
        "change {index} (table {table}): record sequence {sequence:?} is not a decimal number below 2^32"
    )]
    RecordSequence {
        /// Index of the change in the batch.
        index: usize,
        /// Its table.
        table: String,
        /// The sequence as the change carries it.
        sequence: String,
    },
}

/// Parses a record sequence as the compact shape carries it.
pub fn record_sequence(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A batch in the compact shape with its values still borrowed from the
/// changes: what [`encode`] turns into 0.3.0's owned record and
/// [`super::batch_text`] writes as 0.4.0's text, without copying a value.
pub struct Layout<'a> {
    /// The tables the changes refer to.
    pub tables: Vec<Table>,
    /// The transactions the changes refer to.
    pub transactions: Vec<PlacedTransaction<'a>>,
    /// The changes, by position.
    pub changes: Vec<PlacedChange<'a>>,
}

/// One transaction of a [`Layout`], its texts borrowed from a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlacedTransaction<'a> {
    /// Spanner's transaction id (empty for a read).
    pub id: &'a str,
    /// The transaction tag, or empty.
    pub tag: &'a str,
    /// Commit timestamp, microseconds since the Unix epoch.
    pub commit_micros: i64,
}

/// One change of a [`Layout`].
pub struct PlacedChange<'a> {
    /// Index of the table in the layout's `tables`.
    pub table: u32,
    /// Kind of change.
    pub kind: ChangeKind,
    /// Primary key columns, in the order of the table's key columns.
    pub keys: &'a [Column],
    /// Non-key values after the change, each with its column's index.
    pub new_values: Vec<(u32, &'a Value)>,
    /// Non-key values before the change, each with its column's index.
    pub old_values: Vec<(u32, &'a Value)>,
    /// Index of the transaction in the layout's `transactions`.
    pub transaction: u32,
    /// The record sequence as a number.
    pub record_sequence: u32,
}

/// Builds the batch as 0.3.0 plugins receive it (see [`layout`]).
pub fn encode(changes: &[RowChange]) -> Result<Batch, WireError> {
    let layout = layout(changes)?;
    let owned = |cells: Vec<(u32, &Value)>| -> Vec<Cell> {
        cells
            .into_iter()
            .map(|(column, value)| Cell {
                column,
                value: value.clone(),
            })
            .collect()
    };
    Ok(Batch {
        tables: layout.tables,
        transactions: layout
            .transactions
            .into_iter()
            .map(|transaction| Transaction {
                id: transaction.id.to_owned(),
                tag: transaction.tag.to_owned(),
                commit_micros: transaction.commit_micros,
            })
            .collect(),
        changes: layout
            .changes
            .into_iter()
            .map(|change| super::latest::WireChange {
                table: change.table,
                kind: change.kind,
                keys: change.keys.iter().map(|key| key.value.clone()).collect(),
                new_values: owned(change.new_values),
                old_values: owned(change.old_values),
                transaction: change.transaction,
                record_sequence: change.record_sequence,
            })
            .collect(),
    })
}

/// The compact shape of `changes`. Tables and transactions appear in the
/// order their first change does; a table's columns in the order they are
/// first met.
pub fn layout(changes: &[RowChange]) -> Result<Layout<'_>, WireError> {
    let mut tables = Tables::default();
    let mut transactions: Vec<PlacedTransaction<'_>> = Vec::new();
    let mut transaction_index: FxHashMap<PlacedTransaction<'_>, u32> = FxHashMap::default();
    let mut encoded = Vec::with_capacity(changes.len());
    for (index, change) in changes.iter().enumerate() {
        let sequence =
            record_sequence(&change.record_sequence).ok_or_else(|| WireError::RecordSequence {
                index,
                table: change.table.clone(),
                sequence: change.record_sequence.clone(),
            })?;
        let placed = PlacedTransaction {
            id: &change.transaction_id,
            tag: &change.transaction_tag,
            commit_micros: change.commit_micros,
        };
        let transaction = match transactions.last() {
            // A transaction's changes come together: check the last one
            // before hashing.
            Some(last) if *last == placed => (transactions.len() - 1) as u32,
            _ => *transaction_index.entry(placed).or_insert_with(|| {
                transactions.push(placed);
                (transactions.len() - 1) as u32
            }),
        };
        let table = tables.index_of(change);
        encoded.push(PlacedChange {
            table,
            kind: change.kind,
            keys: &change.keys,
            new_values: tables.cells(table, &change.new_values),
            old_values: tables.cells(table, &change.old_values),
            transaction,
            record_sequence: sequence,
        });
    }
    Ok(Layout {
        tables: tables.list,
        transactions,
        changes: encoded,
    })
}

/// The batch's tables, and each table's column positions; names are
/// borrowed from the changes and copied once per batch.
#[derive(Default)]
struct Tables<'a> {
    list: Vec<Table>,
    /// Each table's name and key columns, as its first change has them.
    identities: Vec<(&'a str, &'a [Column])>,
    columns: Vec<FxHashMap<&'a str, u32>>,
    /// Each table's positions of the last change's columns, in that
    /// change's order: the next change of the table most often has the
    /// same columns in the same order, so a name compare replaces a hash.
    last_positions: Vec<Vec<u32>>,
}

impl<'a> Tables<'a> {
    /// The index of `change`'s table, added on first sight. A table is its
    /// name and key columns: changes of one name with other key columns
    /// (which Spanner never sends, but a fixture may) get an entry of their
    /// own, so every change keeps its key names. A batch holds few tables,
    /// so a scan beats hashing names.
    fn index_of(&mut self, change: &'a RowChange) -> u32 {
        let same_keys = |keys: &[Column]| {
            keys.len() == change.keys.len()
                && keys.iter().zip(&change.keys).all(|(a, b)| a.name == b.name)
        };
        if let Some(found) = self
            .identities
            .iter()
            .position(|(name, keys)| *name == change.table && same_keys(keys))
        {
            return found as u32;
        }
        let table = self.list.len() as u32;
        self.list.push(Table {
            name: change.table.clone(),
            key_columns: change.keys.iter().map(|k| k.name.clone()).collect(),
            columns: Vec::new(),
        });
        self.identities.push((&change.table, &change.keys));
        self.columns.push(FxHashMap::default());
        self.last_positions.push(Vec::new());
        table
    }

    /// `columns` as cells of `table`, adding names not met before.
    fn cells(&mut self, table: u32, columns: &'a [Column]) -> Vec<(u32, &'a Value)> {
        let positions = &mut self.columns[table as usize];
        let names = &mut self.list[table as usize].columns;
        let last = &mut self.last_positions[table as usize];
        let cells = columns
            .iter()
            .enumerate()
            .map(|(place, column)| {
                let guess = last
                    .get(place)
                    .filter(|&&guess| names[guess as usize] == column.name);
                let position = match guess {
                    Some(&position) => position,
                    None => *positions.entry(column.name.as_str()).or_insert_with(|| {
                        names.push(column.name.clone());
                        (names.len() - 1) as u32
                    }),
                };
                (position, &column.value)
            })
            .collect::<Vec<_>>();
        // An insert's empty old values leave the layout for the next change.
        if !cells.is_empty() {
            last.clear();
            last.extend(cells.iter().map(|(column, _)| *column));
        }
        cells
    }
}

/// The inverse of [`encode`], for tests and tools: named changes again.
pub fn decode(batch: &Batch) -> Vec<RowChange> {
    let named = |table: &Table, cells: &[Cell]| -> Vec<Column> {
        cells
            .iter()
            .map(|cell| Column {
                name: table.columns[cell.column as usize].clone(),
                value: cell.value.clone(),
            })
            .collect()
    };
    batch
        .changes
        .iter()
        .map(|change| {
            let table = &batch.tables[change.table as usize];
            let transaction = &batch.transactions[change.transaction as usize];
            RowChange {
                table: table.name.clone(),
                kind: change.kind,
                keys: table
                    .key_columns
                    .iter()
                    .zip(&change.keys)
                    .map(|(name, value): (&String, &Value)| Column {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                new_values: named(table, &change.new_values),
                old_values: named(table, &change.old_values),
                commit_micros: transaction.commit_micros,
                transaction_id: transaction.id.clone(),
                record_sequence: change.record_sequence.to_string(),
                transaction_tag: transaction.tag.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{WireError, decode, encode};
    use crate::contract::{ChangeKind, Column, RowChange, Value};

    fn change(
        table: &str,
        keys: Vec<Column>,
        new_values: Vec<Column>,
        txn: &str,
        seq: &str,
    ) -> RowChange {
        RowChange {
            table: table.into(),
            kind: ChangeKind::Update,
            keys,
            new_values,
            old_values: vec![Column::new("Name", Value::String("old".into()))],
            commit_micros: 7,
            transaction_id: txn.into(),
            record_sequence: seq.into(),
            transaction_tag: "tag".into(),
        }
    }

    #[test]
    fn names_and_transactions_are_sent_once_and_come_back() {
        let batch = vec![
            change(
                "Users",
                vec![Column::new("Id", Value::Int64(1))],
                vec![
                    Column::new("Name", Value::String("a".into())),
                    Column::new("Score", Value::Float32(0.1)),
                ],
                "t1",
                "1",
            ),
            change(
                "Orders",
                vec![
                    Column::new("A", Value::Int64(2)),
                    Column::new("B", Value::Null),
                ],
                vec![],
                "t1",
                "2",
            ),
            change(
                "Users",
                vec![Column::new("Id", Value::Int64(3))],
                vec![Column::new("Score", Value::Float32(2.5))],
                "t2",
                "0",
            ),
        ];
        let wire = encode(&batch).expect("encodes");
        assert_eq!(wire.tables.len(), 2);
        assert_eq!(wire.tables[0].columns, ["Name", "Score"]);
        assert_eq!(wire.transactions.len(), 2);
        assert_eq!(wire.changes[2].new_values[0].column, 1);
        assert_eq!(decode(&wire), batch);
    }

    #[test]
    fn columns_in_changing_orders_and_returning_transactions_keep_their_names() {
        let text = |s: &str| Value::String(s.into());
        let users = |id: i64, columns: &[&str], txn: &str| {
            change(
                "Users",
                vec![Column::new("Id", Value::Int64(id))],
                columns
                    .iter()
                    .map(|name| Column::new(name, text(name)))
                    .collect(),
                txn,
                "0",
            )
        };
        let batch = vec![
            users(1, &["A", "B", "C"], "t1"),
            users(2, &["A", "B", "C"], "t1"),
            users(3, &["C", "A"], "t2"),
            users(4, &["B", "D", "A"], "t1"),
            users(5, &["D"], "t2"),
            users(6, &["A", "B", "C", "D"], "t3"),
        ];
        let wire = encode(&batch).expect("encodes");
        // The helper gives every change an old `Name`.
        assert_eq!(wire.tables[0].columns, ["A", "B", "C", "Name", "D"]);
        assert_eq!(wire.transactions.len(), 3);
        assert_eq!(decode(&wire), batch);
    }

    #[test]
    fn a_record_sequence_that_is_not_a_number_is_named() {
        let batch = vec![change(
            "T",
            vec![Column::new("K", Value::Int64(1))],
            vec![],
            "t",
            "x1",
        )];
        assert_eq!(
            encode(&batch).map(|_| ()),
            Err(WireError::RecordSequence {
                index: 0,
                table: "T".into(),
                sequence: "x1".into()
            })
        );
        let too_big = vec![change(
            "T",
            vec![Column::new("K", Value::Int64(1))],
            vec![],
            "t",
            "4294967296",
        )];
        assert!(encode(&too_big).is_err());
    }

    #[test]
    fn one_table_name_with_other_key_columns_keeps_its_names() {
        let batch = vec![
            change(
                "T",
                vec![Column::new("K", Value::Int64(1))],
                vec![],
                "t",
                "1",
            ),
            change(
                "T",
                vec![
                    Column::new("K", Value::Int64(1)),
                    Column::new("J", Value::Int64(2)),
                ],
                vec![],
                "t",
                "2",
            ),
        ];
        let wire = encode(&batch).expect("encodes");
        assert_eq!(wire.tables.len(), 2);
        assert_eq!(decode(&wire), batch);
    }
}

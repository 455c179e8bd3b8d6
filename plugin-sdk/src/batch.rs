//! The contract's compact batch (tables and transactions once, values by
//! position) turned back into [`RowChange`]s with names.

use crate::__private::bindings::redis_spanner::plugin::types::{Batch, Cell, Table};
use crate::{Column, RowChange};

/// The changes of `batch`, in order, with table and column names.
///
/// # Errors
///
/// When an index points outside the batch's tables, columns or
/// transactions (a host bug; the message names the change).
pub fn decode(batch: Batch) -> Result<Vec<RowChange>, String> {
    let Batch {
        tables,
        transactions,
        changes,
    } = batch;
    changes
        .into_iter()
        .enumerate()
        .map(|(index, change)| {
            let bad = |what: &str| format!("change {index}: {what} out of range in the batch");
            let table = tables
                .get(change.table as usize)
                .ok_or_else(|| bad("table"))?;
            let transaction = transactions
                .get(change.transaction as usize)
                .ok_or_else(|| bad("transaction"))?;
            if change.keys.len() != table.key_columns.len() {
                return Err(bad("key count"));
            }
            Ok(RowChange {
                table: table.name.clone(),
                kind: change.kind,
                keys: table
                    .key_columns
                    .iter()
                    .zip(change.keys)
                    .map(|(name, value)| Column {
                        name: name.clone(),
                        value,
                    })
                    .collect(),
                new_values: named(table, change.new_values).ok_or_else(|| bad("column"))?,
                old_values: named(table, change.old_values).ok_or_else(|| bad("column"))?,
                commit_micros: transaction.commit_micros,
                transaction_id: transaction.id.clone(),
                record_sequence: change.record_sequence,
                transaction_tag: transaction.tag.clone(),
            })
        })
        .collect()
}

/// Cells with their column names; `None` when one points outside the table.
fn named(table: &Table, cells: Vec<Cell>) -> Option<Vec<Column>> {
    cells
        .into_iter()
        .map(|cell| {
            Some(Column {
                name: table.columns.get(cell.column as usize)?.clone(),
                value: cell.value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::decode;
    use crate::__private::bindings::redis_spanner::plugin::types::{
        Batch, Cell, ChangeKind, RowChange as WireChange, Table, Transaction, Value,
    };

    fn table(name: &str, keys: &[&str], columns: &[&str]) -> Table {
        Table {
            name: name.into(),
            key_columns: keys.iter().map(|k| k.to_string()).collect(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
        }
    }

    #[test]
    fn names_come_back_from_the_batch_tables() {
        let batch = Batch {
            tables: vec![
                table("Users", &["UserId"], &["Name", "Score"]),
                table("Orders", &["A", "B"], &[]),
            ],
            transactions: vec![Transaction {
                id: "t1".into(),
                tag: "app".into(),
                commit_micros: 42,
            }],
            changes: vec![
                WireChange {
                    table: 0,
                    kind: ChangeKind::Update,
                    keys: vec![Value::Int64(7)],
                    new_values: vec![Cell {
                        column: 1,
                        value: Value::Float32(0.5),
                    }],
                    old_values: vec![Cell {
                        column: 0,
                        value: Value::String("Ada".into()),
                    }],
                    transaction: 0,
                    record_sequence: 3,
                },
                WireChange {
                    table: 1,
                    kind: ChangeKind::Delete,
                    keys: vec![Value::Int64(1), Value::Null],
                    new_values: vec![],
                    old_values: vec![],
                    transaction: 0,
                    record_sequence: 4,
                },
            ],
        };
        let changes = decode(batch).expect("decodes");
        assert_eq!(changes[0].table, "Users");
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
        assert_eq!(changes[1].key("B"), Some(&Value::Null));
        assert_eq!(changes[1].transaction_id, "t1");
    }

    #[test]
    fn an_index_outside_the_batch_is_an_error() {
        let batch = Batch {
            tables: vec![table("T", &["K"], &["A"])],
            transactions: vec![],
            changes: vec![WireChange {
                table: 0,
                kind: ChangeKind::Insert,
                keys: vec![Value::Int64(1)],
                new_values: vec![],
                old_values: vec![],
                transaction: 0,
                record_sequence: 0,
            }],
        };
        assert_eq!(
            decode(batch),
            Err("change 0: transaction out of range in the batch".to_string())
        );
    }
}

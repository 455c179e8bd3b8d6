//! Constructors for [`CacheEffect`] and helpers on [`CacheEvent`].

use crate::{CacheEffect, CacheEvent, Column, Refresh, Value};

impl CacheEffect {
    /// Re-read the row of `table` with primary key `keys` (every key column,
    /// in key order) from Spanner; the host hands it back to
    /// [`crate::Plugin::on_changes`] as a `snapshot` change versioned at the
    /// read timestamp, or as a `delete` when the row does not exist.
    ///
    /// ```
    /// use redis_spanner_sdk::{CacheEffect, Value};
    ///
    /// let refresh = CacheEffect::refresh("Users", [("UserId", Value::Int64(42))]);
    /// let CacheEffect::Refresh(request) = refresh;
    /// assert_eq!(request.table, "Users");
    /// assert_eq!(request.keys[0].name, "UserId");
    /// ```
    pub fn refresh<N: Into<String>>(
        table: impl Into<String>,
        keys: impl IntoIterator<Item = (N, Value)>,
    ) -> CacheEffect {
        CacheEffect::Refresh(Refresh {
            table: table.into(),
            keys: keys
                .into_iter()
                .map(|(name, value)| Column {
                    name: name.into(),
                    value,
                })
                .collect(),
        })
    }
}

impl CacheEvent {
    /// The value of the stream entry's field `name`, if it has one.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
    }
}

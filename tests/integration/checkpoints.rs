//! The checkpoint table's own operations, on a real emulator.

use redis_spanner::source::spanner::checkpoint::{
    CheckpointStore, Finished, ROOT_TOKEN, table_ddl,
};
use redis_spanner_tests::TestBed;
use std::time::Duration;

const TABLE: &str = "RedisSpannerCheckpoints";

/// A host whose lease ran out may finish reading a partition after a host
/// that took it over finished it and its row was removed: recording it
/// finished then says the row is gone, instead of failing for good (the
/// host would otherwise retry forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishing_a_partition_whose_row_is_gone_says_so() -> anyhow::Result<()> {
    let bed = TestBed::start(&[table_ddl(TABLE)]).await?;
    let store = CheckpointStore::new(
        bed.spanner_client().await?,
        TABLE,
        "Stream",
        "host-a",
        Duration::from_secs(10),
    );
    let start = "2026-01-01T00:00:00Z";
    store.record_root(start).await?;
    assert!(store.has_row(ROOT_TOKEN).await?, "the root's row is found");
    assert!(!store.has_row("a-partition-removed-since").await?);
    assert_eq!(
        store.finish(ROOT_TOKEN, start).await?,
        Finished::Recorded,
        "a partition with a row is recorded finished"
    );
    assert_eq!(
        store.finish("a-partition-removed-since", start).await?,
        Finished::RowGone
    );
    Ok(())
}

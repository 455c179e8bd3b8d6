"""Times the Python example plugin (plugins/users-cache-py) on plain
CPython, outside WebAssembly, on the records `redis-spanner bench plugins`
uses: what the example's own code costs before an interpreter compiled to
WebAssembly runs it.

    python3 plugin-sdk/python/bench_example_native.py

Prints microseconds per record for decoding a batch of 64 and for the
whole `on-changes` call.
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "../../plugins/users-cache-py"))

import app  # noqa: E402
from redis_spanner_sdk import (  # noqa: E402
    ChangeKind,
    Column,
    RowChange,
    Value_Bool,
    Value_Int64,
    Value_String,
    decode_batch,
)
from test_redis_spanner_sdk import encode_batch  # noqa: E402

BATCH = 64
ROUNDS = 3000


def sample(i):
    """The synthetic `Users` insert of host/src/devtools/authoring/bench.rs."""
    return RowChange(
        "Users", ChangeKind.INSERT, [Column("UserId", Value_Int64(i))],
        [
            Column("Name", Value_String(f"user-{i}-{i * 7 % 1000}")),
            Column("Email", Value_String(f"user{i}@example.com")),
            Column("Balance", Value_Int64(i * 1234 % 1000000)),
            Column("Active", Value_Bool(i % 5 != 0)),
        ],
        [], 1_700_000_000_000_000 + i, f"tx-{i}", 0, "",
    )


def per_record(call):
    started = time.perf_counter()
    for _ in range(ROUNDS):
        call()
    return (time.perf_counter() - started) / ROUNDS / BATCH * 1e6


def main():
    text = encode_batch([sample(i) for i in range(BATCH)])
    world = app.WitWorld()
    world.init()
    assert len(world.on_changes(text)) == BATCH
    print(f"decode_batch: {per_record(lambda: decode_batch(text)):.2f} µs per record")
    print(f"on-changes:   {per_record(lambda: world.on_changes(text)):.2f} µs per record")


if __name__ == "__main__":
    main()

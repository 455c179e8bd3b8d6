use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How a fake connection answers.
#[derive(Clone, Copy, Debug)]
enum Behaviour {
    /// `OK`.
    Answers,
    /// Never.
    Hangs,
    /// An I/O error (as a dropped connection gives).
    Fails,
    /// An error reply of the server.
    ErrorReply,
    /// `CLUSTERDOWN`: the cluster answers that it cannot serve now.
    ClusterDown,
}

/// A connection whose behaviour a test may change while it is in use.
#[derive(Clone)]
struct FakeConnection(Arc<Mutex<Behaviour>>);

impl FakeConnection {
    fn new(behaviour: Behaviour) -> Self {
        Self(Arc::new(Mutex::new(behaviour)))
    }

    fn set(&self, behaviour: Behaviour) {
        *self.0.lock().unwrap() = behaviour;
    }
}

impl ConnectionLike for FakeConnection {
    fn req_packed_command<'a>(&'a mut self, _cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let behaviour = *self.0.lock().unwrap();
        Box::pin(async move {
            match behaviour {
                Behaviour::Answers => Ok(Value::Okay),
                Behaviour::Hangs => std::future::pending().await,
                Behaviour::Fails => Err(redis::RedisError::from(std::io::Error::from(
                    std::io::ErrorKind::ConnectionReset,
                ))),
                Behaviour::ErrorReply => Err(redis::RedisError::from((
                    ErrorKind::Server(redis::ServerErrorKind::ResponseError),
                    "WRONGTYPE",
                ))),
                Behaviour::ClusterDown => Err(redis::RedisError::from((
                    ErrorKind::Server(redis::ServerErrorKind::ClusterDown),
                    "CLUSTERDOWN",
                ))),
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        _pipeline: &'a Pipeline,
        _offset: usize,
        _count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        unreachable!("the tests send single commands")
    }

    fn get_db(&self) -> i64 {
        0
    }
}

const PATIENCE: Duration = Duration::from_millis(50);

/// `first`, watched; its replacements are opened in the order of `opened`
/// (an `Err` fails that open). Returns the watched connection and the
/// count of opens.
fn watched(
    first: &FakeConnection,
    opened: Vec<Result<Behaviour, ()>>,
) -> (Healing<FakeConnection>, Arc<AtomicUsize>) {
    let opens = Arc::new(AtomicUsize::new(0));
    let counted = opens.clone();
    let opener: Opener<FakeConnection> = Arc::new(move || {
        let n = counted.fetch_add(1, Ordering::SeqCst);
        let next = opened.get(n).copied().unwrap_or(Ok(Behaviour::Answers));
        Box::pin(async move {
            next.map(FakeConnection::new).map_err(|()| {
                redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
            })
        })
    });
    let conn = Healing::with_patience(first.clone(), opener, "test", PATIENCE);
    (conn, opens)
}

/// Sends one command, giving up after a short while as a caller would.
async fn send(conn: &Healing<FakeConnection>) -> Option<RedisResult<Value>> {
    let mut conn = conn.clone();
    let ping = redis::cmd("PING");
    tokio::time::timeout(Duration::from_millis(20), conn.req_packed_command(&ping))
        .await
        .ok()
}

/// Sends until a command is answered with `OK` (at most 5 s).
async fn until_answered(conn: &Healing<FakeConnection>) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if matches!(send(conn).await, Some(Ok(Value::Okay))) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn a_connection_that_stops_answering_is_replaced() {
    let (conn, opens) = watched(
        &FakeConnection::new(Behaviour::Hangs),
        vec![Ok(Behaviour::Answers)],
    );
    assert!(send(&conn).await.is_none(), "the first connection hangs");
    assert!(until_answered(&conn).await, "a new connection answers");
    // (A request given up on the old connection after the swap may start
    // another wait, so on a slow machine a second open is allowed.)
    assert!(opens.load(Ordering::SeqCst) >= 1);
    assert!(conn.replaced() >= 1);
}

#[tokio::test]
async fn a_connection_failing_every_request_is_replaced() {
    let (conn, _) = watched(
        &FakeConnection::new(Behaviour::Fails),
        vec![Ok(Behaviour::Answers)],
    );
    assert!(matches!(send(&conn).await, Some(Err(_))));
    assert!(until_answered(&conn).await);
    assert!(conn.replaced() >= 1);
}

#[tokio::test]
async fn error_replies_are_answers() {
    for reply in [Behaviour::ErrorReply, Behaviour::ClusterDown] {
        let (conn, opens) = watched(&FakeConnection::new(reply), vec![]);
        let started = Instant::now();
        while started.elapsed() < PATIENCE * 4 {
            assert!(matches!(send(&conn).await, Some(Err(_))));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            opens.load(Ordering::SeqCst),
            0,
            "a server that answers ({reply:?}) is kept"
        );
    }
}

#[tokio::test]
async fn an_answer_ends_the_wait() {
    let first = FakeConnection::new(Behaviour::Hangs);
    let (conn, opens) = watched(&first, vec![]);
    assert!(send(&conn).await.is_none(), "a request given up");
    first.set(Behaviour::Answers);
    let started = Instant::now();
    while started.elapsed() < PATIENCE * 4 {
        assert!(matches!(send(&conn).await, Some(Ok(Value::Okay))));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        opens.load(Ordering::SeqCst),
        0,
        "a connection answering again is kept"
    );
}

#[tokio::test]
async fn a_replacement_that_cannot_open_is_tried_again_later() {
    let (conn, opens) = watched(
        &FakeConnection::new(Behaviour::Hangs),
        vec![Err(()), Ok(Behaviour::Answers)],
    );
    assert!(send(&conn).await.is_none());
    assert!(until_answered(&conn).await);
    assert_eq!(
        opens.load(Ordering::SeqCst),
        2,
        "one failed open, one that worked"
    );
    assert_eq!(conn.replaced(), 1);
}

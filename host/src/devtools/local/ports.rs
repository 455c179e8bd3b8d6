//! Free loopback ports.
//!
//! A port is found by binding `127.0.0.1:0`, reading the port the kernel
//! chose and closing the socket. Another process may bind the same port before
//! the server does; the servers in this module then exit with "address already
//! in use" (or, for the emulator's gRPC port, share it: see
//! `listening_sockets`) and their `start` retries with new ports. Within one
//! process a port is handed out only once.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::LocalError;

/// Ports already handed out by this process. They are not handed out
/// again, so two servers started in parallel (tests) never race for one
/// port: only other processes can take it.
static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// How many ports to skip at most while looking for ones not handed out yet.
const MAX_SKIPPED: usize = 256;

/// Returns a loopback TCP port that was free a moment ago.
///
/// # Errors
///
/// [`LocalError::FreePort`] when the kernel gives out no port.
pub fn free_port() -> Result<u16, LocalError> {
    let [port] = free_ports::<1>()?;
    Ok(port)
}

/// Returns `N` distinct loopback TCP ports that were free a moment ago.
///
/// All sockets are held open together while the ports are read, so the
/// ports differ from each other, and a port this process handed out before
/// is skipped (its socket stays open meanwhile, so the kernel picks another).
///
/// # Errors
///
/// [`LocalError::FreePort`] when the kernel gives out no port, or only ports
/// handed out before.
pub fn free_ports<const N: usize>() -> Result<[u16; N], LocalError> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    // Holds every socket until the end, skipped ones included.
    let mut held = Vec::new();
    let mut ports = [0u16; N];
    let mut found = 0;
    while found < N {
        if held.len() >= N + MAX_SKIPPED {
            return Err(LocalError::FreePort {
                error: std::io::Error::other(format!(
                    "the kernel offered only ports this process already uses ({} tried)",
                    held.len()
                )),
            });
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|error| LocalError::FreePort { error })?;
        let port = listener
            .local_addr()
            .map_err(|error| LocalError::FreePort { error })?
            .port();
        held.push(listener);
        if handed_out.insert(port) {
            ports[found] = port;
            found += 1;
        }
    }
    Ok(ports)
}

/// How many distinct sockets listen on TCP `port` (any address, IPv4 or
/// IPv6), according to `/proc/net/tcp` and `/proc/net/tcp6`.
///
/// gRPC servers such as `emulator_main` set `SO_REUSEPORT`, so a second one
/// binds a port that another already listens on without any error, and the
/// kernel then spreads connections over both. More than one listener on a
/// port a server was just started on reveals such a collision.
///
/// The kernel produces these tables a page at a time and walks its socket
/// lists afresh for each page, so while sockets come and go a row can be
/// missed or repeated. Rows are therefore told apart by socket inode, and
/// the tables are read [`TABLE_READS`] times.
pub(crate) fn listening_sockets(port: u16) -> usize {
    let mut inodes = BTreeSet::new();
    for _ in 0..TABLE_READS {
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Ok(text) = std::fs::read_to_string(table) {
                inodes.extend(listener_inodes(&text, port));
            }
        }
    }
    inodes.len()
}

/// Whether process `pid` itself holds a socket listening on `port`: another
/// process answering on the port does not count.
pub(crate) fn process_listens_on(pid: u32, port: u16) -> bool {
    let mut listeners = BTreeSet::new();
    for _ in 0..TABLE_READS {
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Ok(text) = std::fs::read_to_string(table) {
                listeners.extend(listener_inodes(&text, port));
            }
        }
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let text = target.to_string_lossy().into_owned();
            text.strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse::<u64>()
                .ok()
        })
        .any(|inode| listeners.contains(&inode))
}

/// How many times [`listening_sockets`] reads the tables.
const TABLE_READS: usize = 3;

/// The socket inodes of the rows of a `/proc/net/tcp*` table in state
/// LISTEN (`0A`) whose local port is `port`.
fn listener_inodes(table: &str, port: u16) -> impl Iterator<Item = u64> + '_ {
    table.lines().skip(1).filter_map(move |line| {
        // sl, local_address, rem_address, st, tx:rx, tr:when, retrnsmt, uid, timeout, inode
        let fields: Vec<&str> = line.split_whitespace().take(10).collect();
        let [_, local, _, state, _, _, _, _, _, inode] = fields.as_slice() else {
            return None;
        };
        let (_, local_port) = local.rsplit_once(':')?;
        if *state != "0A" || u16::from_str_radix(local_port, 16).ok()? != port {
            return None;
        }
        inode.parse().ok()
    })
}

/// How long one connection attempt may take before the port counts as closed.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// True when something accepts TCP connections on `127.0.0.1:port`.
pub(crate) async fn accepts_connections(port: u16) -> bool {
    matches!(
        tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        )
        .await,
        Ok(Ok(_))
    )
}

/// Waits until nothing accepts connections on `port` any more, for at most
/// `timeout`, and says whether that happened.
///
/// A socket closed by this process can live on for a moment in a child that
/// another thread is spawning (between its fork and its exec), so a port
/// does not always refuse connections the instant its listener is dropped.
#[cfg(test)]
pub(crate) async fn closes_within(port: u16, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while accepts_connections(port).await {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_bindable() -> anyhow::Result<()> {
        let ports = free_ports::<4>()?;
        for (i, a) in ports.iter().enumerate() {
            assert_ne!(*a, 0);
            for b in &ports[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let _listener = TcpListener::bind((Ipv4Addr::LOCALHOST, ports[0]))?;
        Ok(())
    }

    #[test]
    fn free_ports_never_repeats_within_the_process() -> anyhow::Result<()> {
        let mut seen = BTreeSet::new();
        for _ in 0..50 {
            for port in free_ports::<2>()? {
                assert!(seen.insert(port), "port {port} handed out twice");
            }
        }
        Ok(())
    }

    #[test]
    fn listener_inodes_reads_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:4A6B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:4A6B 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2 1
   2: 0000000000000000FFFF00000100007F:4A6B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1
   3: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4 1";
        let inodes = |port| listener_inodes(table, port).collect::<Vec<_>>();
        assert_eq!(inodes(0x4A6B), vec![1, 3]);
        assert_eq!(inodes(0x1F90), vec![4]);
        assert_eq!(inodes(1), Vec::<u64>::new());
    }

    #[test]
    fn listening_sockets_sees_a_listener() -> anyhow::Result<()> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        assert_eq!(listening_sockets(port), 1);
        drop(listener);
        // A child spawned by another test thread may hold a copy of the
        // socket between its fork and its exec; the socket closes then.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while listening_sockets(port) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(listening_sockets(port), 0);
        Ok(())
    }

    #[tokio::test]
    async fn accepts_connections_tells_open_from_closed() -> anyhow::Result<()> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        assert!(accepts_connections(port).await);
        drop(listener);
        assert!(closes_within(port, Duration::from_secs(2)).await);
        Ok(())
    }
}

//! Admission of connections and of bytes not yet authenticated, so that
//! anonymous traffic exhausts only its own share.
//!
//! - Connections: at most `max_connections` open at once (by default a
//!   little under the process's file limit, which is raised to its hard
//!   limit at start) and `max_connections_per_peer` from one address. A
//!   connection past either cap is answered `503` with `Retry-After` and
//!   closed at once, before the descriptor limit is reached, so the host
//!   never stops accepting.
//! - Outbound requests: `max_outbound_requests` in flight at once across
//!   every connector (by default a quarter of the file limit), taken out
//!   of the descriptors the connections may use.
//! - Unauthenticated bytes: a push body whose sender is not yet known to be
//!   authentic (signature schemes check the body; `auth = none` is
//!   anonymous) is buffered only within a byte budget per peer address and
//!   in total. An attacker that trickles bodies exhausts its own address's
//!   budget; senders on other addresses keep theirs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Connections answered 503 at once (each holds a descriptor for up to a
/// second); past it a refused connection is closed without an answer.
pub const MAX_REFUSING: usize = 64;

/// Descriptors kept back from the file limit for the store, the compile
/// cache, SQL pools and the watcher.
const RESERVED_FDS: u64 = 256;

/// Counts per peer address and in total, within caps.
#[derive(Debug)]
struct Ledger {
    total_cap: u64,
    peer_cap: u64,
    inner: Mutex<(u64, HashMap<IpAddr, u64>)>,
}

impl Ledger {
    fn new(total_cap: u64, peer_cap: u64) -> Self {
        Ledger {
            total_cap,
            peer_cap,
            inner: Mutex::new((0, HashMap::new())),
        }
    }

    fn take(self: &Arc<Self>, peer: IpAddr, n: u64) -> Result<Grant, Refused> {
        let peer = peer_key(peer);
        let mut guard = self.inner.lock().expect("ledger lock");
        let (total, peers) = &mut *guard;
        if *total + n > self.total_cap {
            return Err(Refused::Total);
        }
        let held = peers.entry(peer).or_insert(0);
        if self.peer_cap > 0 && *held + n > self.peer_cap {
            if *held == 0 {
                peers.remove(&peer);
            }
            return Err(Refused::Peer);
        }
        *held += n;
        *total += n;
        Ok(Grant {
            ledger: self.clone(),
            peer,
            n,
        })
    }
}

/// The address a share is kept under: an IPv4 address (also when mapped
/// into IPv6), or an IPv6 address's /64, which one client typically holds
/// whole (so rotating through it gains nothing).
fn peer_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// Why an admission was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The host-wide cap.
    Total,
    /// The cap of the peer's address.
    Peer,
}

/// A share of a [`Ledger`], given back when dropped.
#[derive(Debug)]
pub struct Grant {
    ledger: Arc<Ledger>,
    peer: IpAddr,
    n: u64,
}

impl Drop for Grant {
    fn drop(&mut self) {
        let mut guard = self.ledger.inner.lock().expect("ledger lock");
        let (total, peers) = &mut *guard;
        *total -= self.n;
        if let Some(held) = peers.get_mut(&self.peer) {
            *held -= self.n;
            if *held == 0 {
                peers.remove(&self.peer);
            }
        }
    }
}

/// The host's admission limits.
#[derive(Debug)]
pub struct Admission {
    connections: Arc<Ledger>,
    unauthenticated: Arc<Ledger>,
    /// Outbound requests in flight at once, host-wide (their descriptors
    /// come out of the same file limit as the connections').
    pub outbound_requests: usize,
}

impl Admission {
    /// Caps from `inlet.toml`; `max_connections = 0` means "from the file
    /// limit".
    pub fn new(limits: &crate::config::Limits) -> Self {
        let soft = rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024);
        let outbound = match limits.max_outbound_requests {
            0 => (soft / 4).clamp(16, 4096),
            n => u64::from(n),
        };
        let connections = match limits.max_connections {
            0 => soft
                .saturating_sub(RESERVED_FDS)
                .saturating_sub(outbound)
                .clamp(64, 65_536),
            n => u64::from(n),
        };
        Admission {
            connections: Arc::new(Ledger::new(
                connections,
                u64::from(limits.max_connections_per_peer),
            )),
            unauthenticated: Arc::new(Ledger::new(
                limits.unauthenticated_bytes,
                limits.unauthenticated_bytes_per_peer,
            )),
            outbound_requests: usize::try_from(outbound).unwrap_or(usize::MAX),
        }
    }

    /// Admits one connection from `peer`.
    pub fn connection(&self, peer: IpAddr) -> Result<Grant, Refused> {
        self.connections.take(peer, 1)
    }

    /// Reserves `bytes` of body from `peer` that is not authenticated yet.
    pub fn unauthenticated(&self, peer: IpAddr, bytes: u64) -> Result<Grant, Refused> {
        self.unauthenticated.take(peer, bytes)
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (each connection, each
/// outbound request and the store need descriptors); logs what it got.
pub fn raise_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "File descriptor limit raised."),
        Err(err) => {
            tracing::warn!(error = %err, "Cannot raise the file descriptor limit.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_peer_exhausts_only_its_own_share() {
        let ledger = Arc::new(Ledger::new(10, 4));
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..4).map(|_| ledger.take(a, 1).unwrap()).collect();
        assert_eq!(ledger.take(a, 1).unwrap_err(), Refused::Peer);
        let other = ledger.take(b, 4).unwrap();
        drop(held);
        assert!(ledger.take(a, 4).is_ok());
        drop(other);
        let v6 = Arc::new(Ledger::new(10, 1));
        let _one = v6.take("2001:db8::1".parse().unwrap(), 1).unwrap();
        assert_eq!(
            v6.take("2001:db8::2".parse().unwrap(), 1).unwrap_err(),
            Refused::Peer,
            "one /64 is one peer"
        );
        assert!(v6.take("2001:db8:0:1::1".parse().unwrap(), 1).is_ok());
        let big = Arc::new(Ledger::new(5, 0));
        let _x = big.take(a, 5).unwrap();
        assert_eq!(big.take(b, 1).unwrap_err(), Refused::Total);
    }
}

/// The address a request came from (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub std::net::SocketAddr);

/// The request's id, as answered in `X-Request-Id` and logged (a request
/// extension).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

//! The optional cap on concurrent connections from one address (`server.max_connections_per_ip`),
//! counted over the HTTP listener (WebSocket, REST, metrics alike: at accept a connection's use
//! is not known yet) and the STOMP/TCP listener together, and enforced at accept, before any
//! byte is read. An IPv6 client counts by its /64, the block one host is usually given, so that
//! it cannot step around the cap by changing addresses within it.
//!
//! Off (0) by default: behind a load balancer or a proxy every client has the same address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::io::InspectReader;

use crate::util::lock;

/// Open connections by address (or IPv6 /64).
#[derive(Debug)]
pub struct PerIpLimit {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// What one address is counted as: itself, or for IPv6 its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

impl PerIpLimit {
    /// A cap of `max` connections per address; `None` for 0, which means no cap.
    pub fn new(max: usize) -> Option<Arc<PerIpLimit>> {
        (max > 0).then(|| {
            Arc::new(PerIpLimit {
                max,
                open: Mutex::new(HashMap::new()),
            })
        })
    }

    /// Counts a new connection from `ip`, or refuses it when the address has `max` open.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpGuard> {
        let key = key(ip);
        let mut open = lock(&self.open);
        let count = open.entry(key).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpGuard {
            limit: self.clone(),
            key,
        })
    }

    /// Connections open from `ip` (its /64 for IPv6).
    pub fn open_from(&self, ip: IpAddr) -> usize {
        lock(&self.open).get(&key(ip)).copied().unwrap_or(0)
    }
}

/// One counted connection; dropping it frees its place.
#[derive(Debug)]
pub struct IpGuard {
    limit: Arc<PerIpLimit>,
    key: IpAddr,
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        let mut open = lock(&self.limit.open);
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// `inner` holding its place (none when there is no cap): the place is freed when the socket is
/// dropped, also when an HTTP upgrade has handed the socket to a WebSocket session that outlives
/// the request. The guard rides in the reader's inspection closure, which does nothing else.
pub fn guarded<S: AsyncRead + AsyncWrite>(
    inner: S,
    guard: Option<IpGuard>,
) -> InspectReader<S, impl FnMut(&[u8]) + Send + Unpin> {
    InspectReader::new(inner, move |_: &[u8]| {
        let _held = &guard;
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_at_most_max_places_and_gets_them_back() {
        let limit = PerIpLimit::new(2).unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let first = limit.admit(ip).unwrap();
        let _second = limit.admit(ip).unwrap();
        assert!(limit.admit(ip).is_none());
        assert!(limit.admit("192.0.2.8".parse().unwrap()).is_some());
        drop(first);
        assert!(limit.admit(ip).is_some());
    }

    #[test]
    fn an_ipv6_host_counts_by_its_64_block() {
        let limit = PerIpLimit::new(1).unwrap();
        let _held = limit.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(limit.admit("2001:db8:1:2::ffff".parse().unwrap()).is_none());
        assert!(limit.admit("2001:db8:1:3::1".parse().unwrap()).is_some());
    }

    #[test]
    fn a_mapped_ipv4_address_counts_as_itself() {
        let limit = PerIpLimit::new(1).unwrap();
        let _held = limit.admit("192.0.2.7".parse().unwrap()).unwrap();
        assert!(limit.admit("::ffff:192.0.2.7".parse().unwrap()).is_none());
    }

    #[test]
    fn zero_means_no_cap() {
        assert!(PerIpLimit::new(0).is_none());
    }
}

//! Where connections come from. One source address holds as many connections to a target as
//! there are ephemeral ports; past that, connections to a loopback target spread over
//! 127.0.0.1, 127.0.0.2, ... (all of 127/8 is local on Linux), as tcpkali does.

use crate::sys;
use anyhow::{Result, ensure};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Source addresses one run may use.
pub const MAX_SOURCE_ADDRESSES: usize = 64;

/// Connections one source address is given (all an IPv6 target gets): a quarter of the
/// ephemeral ports. The kernel looks
/// for a free port at each connect, and the search slows as a source's ports fill: from 5
/// addresses at 70% full, 100,000 connections came at 1,000 a second; from 15 at 25%, all
/// within 4 s (`cargo xtask bench c100k`).
pub fn per_source_address() -> usize {
    (sys::ephemeral_ports() / 4).max(1) as usize
}

/// The most connections one run can hold to a loopback IPv4 target.
pub fn most_connections() -> usize {
    per_source_address() * MAX_SOURCE_ADDRESSES
}

/// Source addresses connections to `ip` may come from: all of [`MAX_SOURCE_ADDRESSES`] for IPv4
/// loopback (all of 127/8 is local), one for anything else.
pub fn source_addresses_for(ip: IpAddr) -> usize {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => MAX_SOURCE_ADDRESSES,
        _ => 1,
    }
}

/// The source addresses of `concurrency` connections to `target`: none (the kernel picks) when
/// one address holds them all.
pub(crate) fn source_addresses(target: SocketAddr, concurrency: usize) -> Result<Vec<IpAddr>> {
    spread(target, concurrency, per_source_address())
}

fn spread(target: SocketAddr, concurrency: usize, per_address: usize) -> Result<Vec<IpAddr>> {
    if concurrency <= per_address {
        return Ok(Vec::new());
    }
    ensure!(
        source_addresses_for(target.ip()) > 1,
        "{concurrency} connections to {target} need more than one source address (each holds \
         {per_address}), and only IPv4 loopback has more: use a 127.x.x.x target"
    );
    let n = concurrency.div_ceil(per_address);
    ensure!(
        n <= MAX_SOURCE_ADDRESSES,
        "{concurrency} connections need {n} source addresses of {per_address} connections each; \
         at most {MAX_SOURCE_ADDRESSES} are used"
    );
    Ok((1..=n).map(|k| IpAddr::V4(Ipv4Addr::new(127, 0, 0, k as u8))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_spread_over_loopback_addresses_only_when_needed() {
        let local: SocketAddr = "127.0.0.1:80".parse().unwrap();
        assert!(spread(local, 1000, 1000).unwrap().is_empty());
        let two = spread(local, 1001, 1000).unwrap();
        assert_eq!(
            two,
            ["127.0.0.1".parse::<IpAddr>().unwrap(), "127.0.0.2".parse().unwrap()]
        );
        assert_eq!(spread(local, 64_000, 1000).unwrap().len(), 64);
        assert!(
            spread(local, 64_001, 1000)
                .unwrap_err()
                .to_string()
                .contains("at most 64")
        );
        assert!(spread("[::1]:80".parse().unwrap(), 1001, 1000).is_err());
        assert!(spread("10.0.0.1:80".parse().unwrap(), 1001, 1000).is_err());
    }
}

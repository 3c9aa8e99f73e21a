//! Where a callback came from, and whether its provider accepts that.
//!
//! Vendors publish the address ranges their webhooks come from; a provider
//! with `allow_from` accepts only those. Behind a load balancer the peer is
//! the proxy, so `X-Forwarded-For` is read, but only when the peer is one of
//! `trusted_proxies`, and then from the right: each trusted hop appends the
//! address it saw, so the first address from the right that is not a trusted
//! proxy is the client. Anything left of it is whatever the client wrote.

use crate::IngesterError;
use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

/// Parses CIDRs (`10.0.0.0/8`) or single addresses, naming the field of a bad one.
pub fn parse_networks(entries: &[String], field: &str) -> Result<Vec<IpNet>, IngesterError> {
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let text = e.trim();
            text.parse::<IpNet>()
                .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| IngesterError::Config(format!("{field}[{i}]: {text:?} is not an address or CIDR range")))
        })
        .collect()
}

/// The client's address: the peer's, or, from a trusted proxy, the last
/// untrusted address of `X-Forwarded-For`.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted_proxies: &[IpNet]) -> IpAddr {
    let trusted = |ip: &IpAddr| trusted_proxies.iter().any(|n| n.contains(ip));
    if !trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            // An unparsable hop ends what can be believed.
            break;
        };
        client = ip;
        if !trusted(&ip) {
            break;
        }
    }
    client
}

/// Whether `client` may deliver to a provider with `allow_from` (empty: anyone).
pub fn allowed(client: IpAddr, allow_from: &[IpNet]) -> bool {
    allow_from.is_empty() || allow_from.iter().any(|n| n.contains(&client))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        parse_networks(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(), "x").expect("valid")
    }

    fn xff(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", value.parse().expect("header"));
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies_and_read_from_the_right() {
        let proxies = nets(&["10.0.0.0/8"]);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        // Straight from the internet: the header is the client's own claim.
        assert_eq!(client_address(ip("203.0.113.9"), &xff("54.187.174.169"), &proxies), ip("203.0.113.9"));
        // Through our proxy: the address the proxy saw.
        assert_eq!(client_address(ip("10.1.2.3"), &xff("54.187.174.169"), &proxies), ip("54.187.174.169"));
        // A forged entry to the left of what the proxy appended is ignored.
        assert_eq!(client_address(ip("10.1.2.3"), &xff("54.187.174.169, 198.51.100.7"), &proxies), ip("198.51.100.7"));
        // Two trusted hops.
        assert_eq!(client_address(ip("10.1.2.3"), &xff("198.51.100.7, 10.9.9.9"), &proxies), ip("198.51.100.7"));
        // From a trusted proxy without the header: the proxy itself.
        assert_eq!(client_address(ip("10.1.2.3"), &HeaderMap::new(), &proxies), ip("10.1.2.3"));
    }

    #[test]
    fn allowlists_take_ranges_and_single_addresses_and_name_a_bad_entry() {
        let allow = nets(&["54.187.174.169", "3.18.12.0/24", "2600:1f18::/32"]);
        assert!(allowed("54.187.174.169".parse().expect("ip"), &allow));
        assert!(allowed("3.18.12.63".parse().expect("ip"), &allow));
        assert!(allowed("2600:1f18::1".parse().expect("ip"), &allow));
        assert!(!allowed("3.18.13.1".parse().expect("ip"), &allow));
        assert!(allowed("192.0.2.1".parse().expect("ip"), &[]), "no list: anyone");
        let err = parse_networks(&["10.0.0.0/8".into(), "stripe.com".into()], "providers.stripe.allow_from").expect_err("bad");
        assert!(err.to_string().contains("providers.stripe.allow_from[1]"), "{err}");
    }
}

//! Who is calling, as far as the network says: the client's address. `X-Forwarded-For` is
//! believed only when the peer is a configured proxy (the ingress), and then only up to the first
//! address that is not one: otherwise any client could name any address and slip past the
//! per-address limits.

use std::net::IpAddr;

use actix_web::HttpRequest;
use ipnet::IpNet;

/// `gateway.trusted_proxies`: addresses (`10.0.0.7`) or ranges (`10.0.0.0/24`).
pub fn parse_proxies(items: &[String]) -> anyhow::Result<Vec<IpNet>> {
    items
        .iter()
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| anyhow::anyhow!("`{item}` is neither an address nor a CIDR range"))
        })
        .collect()
}

/// The client's address: the peer's, or, when the peer is a trusted proxy, the right-most
/// address of `X-Forwarded-For` that is not a trusted proxy itself.
pub fn address(request: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = request.peer_addr()?.ip();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = request
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .unwrap_or(peer),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn from(peer: &str, xff: Option<&str>) -> HttpRequest {
        let mut req = TestRequest::get().peer_addr(format!("{peer}:5000").parse().unwrap());
        if let Some(xff) = xff {
            req = req.insert_header(("x-forwarded-for", xff.to_string()));
        }
        req.to_http_request()
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let trusted = parse_proxies(&["10.0.0.0/24".into(), "192.0.2.1".into()]).unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // A client that claims to be someone else is itself.
        assert_eq!(
            address(&from("203.0.113.9", Some("198.51.100.1")), &trusted),
            Some(ip("203.0.113.9"))
        );
        // Through the ingress: the address the ingress saw, not what the client prepended.
        assert_eq!(
            address(
                &from("10.0.0.5", Some("198.51.100.1, 203.0.113.9")),
                &trusted
            ),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            address(&from("10.0.0.5", Some("203.0.113.9, 192.0.2.1")), &trusted),
            Some(ip("203.0.113.9")),
            "a chain of trusted proxies is skipped"
        );
        assert_eq!(
            address(&from("10.0.0.5", None), &trusted),
            Some(ip("10.0.0.5"))
        );
        assert!(parse_proxies(&["not-an-address".into()]).is_err());
    }
}

//! The client IP, derived exactly as the contract says, and nothing else:
//!
//! 1. behind CloudFront, `CloudFront-Viewer-Address`, only when the request carries the
//!    origin-verify secret (otherwise anyone could pick their own IP);
//! 2. on Lambda, API Gateway's `requestContext.http.sourceIp`;
//! 3. in the local server, `X-Forwarded-For` (the entry the one trusted proxy added) only when
//!    `TRUST_FORWARDED_FOR=true`, else the socket peer.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use http::Request;
use lambda_http::{RequestExt, request::RequestContext};

use platform::config::Config;

pub const ORIGIN_VERIFY_HEADER: &str = "x-origin-verify";

/// The client's network as the limiters count it ([`rate_key`]), set by the rate-limit layer
/// for the handlers: the per-account password limits keep a budget per known network.
#[derive(Debug, Clone)]
pub struct ClientNetwork(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientNetwork {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Self>()
            .cloned()
            .unwrap_or_else(|| Self(rate_key(None))))
    }
}

pub fn client_ip<B>(req: &Request<B>, config: &Config) -> Option<IpAddr> {
    if let Some(secret) = &config.origin_verify_secret {
        let presented = req
            .headers()
            .get(ORIGIN_VERIFY_HEADER)
            .map(http::HeaderValue::as_bytes);
        let verified = presented
            .is_some_and(|p| constant_time_eq(p, platform::config::expose(secret).as_bytes()));
        let viewer = req
            .headers()
            .get("cloudfront-viewer-address")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_viewer_address);
        if let (true, Some(ip)) = (verified, viewer) {
            return Some(ip);
        }
    }
    if let Some(RequestContext::ApiGatewayV2(ctx)) = req.request_context_ref() {
        return ctx.http.source_ip.as_deref().and_then(|ip| ip.parse().ok());
    }
    if config.trust_forwarded_for {
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|ip| ip.trim().parse::<IpAddr>().ok())
            .next_back();
        if forwarded.is_some() {
            return forwarded;
        }
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// `CloudFront-Viewer-Address` is `IP:port`; an IPv6 address has colons of its own.
fn parse_viewer_address(value: &str) -> Option<IpAddr> {
    let (ip, _port) = value.rsplit_once(':')?;
    ip.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The key a client is counted under: the address for IPv4, its /64 network for IPv6 (one
/// subscriber usually holds a whole /64).
pub fn rate_key(ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        None => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_counted_per_64() {
        let a = rate_key(Some("2001:db8:1:2:aaaa::1".parse().expect("ip")));
        let b = rate_key(Some("2001:db8:1:2:bbbb::2".parse().expect("ip")));
        let c = rate_key(Some("2001:db8:1:3::1".parse().expect("ip")));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            rate_key(Some("::ffff:192.0.2.1".parse().expect("ip"))),
            "192.0.2.1"
        );
    }

    #[test]
    fn viewer_addresses_parse() {
        assert_eq!(
            parse_viewer_address("198.51.100.7:46532"),
            "198.51.100.7".parse().ok()
        );
        assert_eq!(
            parse_viewer_address("2001:db8::1:46532"),
            "2001:db8::1".parse().ok()
        );
        assert_eq!(parse_viewer_address("garbage"), None);
    }
}

//! Who may talk to the `plumb ui` server. A server on loopback is still reachable from any page
//! open in the user's browser, so:
//!
//! - every request must name this server in `Host` (a page on another site that rebinds its DNS
//!   name to 127.0.0.1 sends its own name, and is refused: it cannot read the pages);
//! - an action must be a POST carrying this process's CSRF token (only pages this server served
//!   hold it) and, when the browser sends `Origin`, come from this server's own origin.

use std::net::SocketAddr;

use subtle::ConstantTimeEq;

/// The checks of one server process.
#[derive(Debug)]
pub struct Guard {
    csrf: String,
    /// The `Host` values accepted; empty when any is (a non-loopback address, explicitly allowed).
    hosts: Vec<String>,
}

impl Guard {
    /// The guard of a server bound to `bound`, with a new random CSRF token.
    pub fn new(bound: SocketAddr, allow_any_host: bool) -> anyhow::Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| anyhow::anyhow!("no randomness for the CSRF token: {e}"))?;
        Ok(Self::with_token(bound, allow_any_host, hex::encode(bytes)))
    }

    fn with_token(bound: SocketAddr, allow_any_host: bool, csrf: String) -> Self {
        let port = bound.port();
        let hosts = if allow_any_host && !bound.ip().is_loopback() {
            Vec::new()
        } else {
            let mut hosts = vec![bound.to_string(), format!("localhost:{port}")];
            if bound.is_ipv4() {
                hosts.push(format!("127.0.0.1:{port}"));
            } else {
                hosts.push(format!("[::1]:{port}"));
            }
            hosts.dedup();
            hosts
        };
        Self { csrf, hosts }
    }

    /// The token every action form carries.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether a request with this `Host` header may be served.
    pub fn host_allowed(&self, host: Option<&str>) -> bool {
        match host {
            None => false,
            Some(h) => self.hosts.is_empty() || self.hosts.iter().any(|a| a == h),
        }
    }

    /// Whether an action with these headers and `token` may run: the token matches (compared in
    /// constant time) and `Origin`, when sent, is this server's own (`http://<Host>`).
    pub fn action_allowed(&self, host: Option<&str>, origin: Option<&str>, token: &str) -> bool {
        let same_origin = match (origin, host) {
            (None, _) => true,
            (Some(o), Some(h)) => o == format!("http://{h}"),
            (Some(_), None) => false,
        };
        let token_ok: bool = self.csrf.as_bytes().ct_eq(token.as_bytes()).into();
        self.host_allowed(host) && same_origin && token_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::with_token("127.0.0.1:7777".parse().unwrap(), false, "t0ken".into())
    }

    #[test]
    fn only_this_servers_host_names_are_served() {
        let g = guard();
        assert!(g.host_allowed(Some("127.0.0.1:7777")));
        assert!(g.host_allowed(Some("localhost:7777")));
        assert!(!g.host_allowed(Some("evil.example:7777")), "DNS rebinding");
        assert!(!g.host_allowed(Some("127.0.0.1:7778")));
        assert!(!g.host_allowed(None));
    }

    #[test]
    fn actions_need_the_token_and_this_origin() {
        let g = guard();
        let host = Some("127.0.0.1:7777");
        assert!(g.action_allowed(host, Some("http://127.0.0.1:7777"), "t0ken"));
        assert!(
            g.action_allowed(host, None, "t0ken"),
            "curl sends no Origin"
        );
        assert!(!g.action_allowed(host, Some("http://127.0.0.1:7777"), "guess"));
        assert!(!g.action_allowed(host, Some("https://evil.example"), "t0ken"));
        assert!(!g.action_allowed(host, Some("null"), "t0ken"));
        assert!(!g.action_allowed(Some("evil.example"), None, "t0ken"));
    }

    #[test]
    fn a_non_loopback_address_allowed_explicitly_takes_any_host_but_still_checks_origin() {
        let g = Guard::with_token("0.0.0.0:7777".parse().unwrap(), true, "t".into());
        assert!(g.host_allowed(Some("laptop.lan:7777")));
        assert!(g.action_allowed(Some("laptop.lan:7777"), Some("http://laptop.lan:7777"), "t"));
        assert!(!g.action_allowed(Some("laptop.lan:7777"), Some("http://evil.example"), "t"));
    }

    #[test]
    fn tokens_differ_per_process() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let (a, b) = (
            Guard::new(addr, false).unwrap(),
            Guard::new(addr, false).unwrap(),
        );
        assert_ne!(a.csrf(), b.csrf());
        assert_eq!(a.csrf().len(), 64);
    }
}

//! Loopback ports for servers a test starts in another process (git daemon, sshd, a controller).
//!
//! Binding port 0 and passing the number on races: between the drop and the child's bind, the
//! kernel may hand the same port to any outbound connection, since port 0 draws from the
//! ephemeral range. The ports here come from below that range, which outbound connections never
//! use, are handed out once per process, and are checked free when handed out.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Error, Result};

/// The ports handed out from; below Linux's default ephemeral range (32768–60999) and above the
/// test cluster's own ports (16xxx).
const FIRST: u16 = 20_000;
const LAST: u16 = 32_000;

static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A free loopback port no other caller in this process has been given. Another process can still
/// take it before the caller binds it, but not an outbound connection; different test processes
/// start their search at different places.
pub fn free_port() -> Result<u16> {
    let span = u32::from(LAST - FIRST);
    let seed = std::process::id()
        ^ SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    for step in 0..span {
        let port = FIRST + u16::try_from((seed.wrapping_add(step)) % span).unwrap_or(0);
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            given.insert(port);
            return Ok(port);
        }
    }
    Err(Error::Io(format!(
        "no free loopback port in {FIRST}..{LAST}"
    )))
}

/// [`free_port`] as a loopback socket address.
pub fn free_addr() -> Result<SocketAddr> {
    Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_free_and_outside_the_ephemeral_range() {
        let ports: Vec<u16> = (0..50).map(|_| free_port().unwrap()).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            ports.len(),
            "a port was handed out twice: {ports:?}"
        );
        for port in ports {
            assert!((FIRST..LAST).contains(&port), "{port}");
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("the port is free");
        }
    }
}

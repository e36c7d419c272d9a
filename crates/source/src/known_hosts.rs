//! Verifying an SSH server's host key against a `known_hosts` file, as OpenSSH does: plain and
//! hashed (`|1|salt|hash`) host patterns, `[host]:port` for non-default ports, `*`/`?` wildcards,
//! negation, and `@revoked`. An unknown host is refused; there is no trust on first use.

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

/// The verdict for one host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyVerdict {
    /// A non-revoked line names the host with this key.
    Trusted,
    /// The host is listed, but with other keys: possibly a man in the middle.
    Mismatch,
    /// The key is marked `@revoked`.
    Revoked,
    /// No line names the host.
    Unknown,
}

/// How the host is named in known_hosts: `host` on port 22, `[host]:port` otherwise.
pub fn host_label(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// OpenSSH-style wildcard match (`*` any run, `?` one character, ASCII case-insensitive).
///
/// Greedy with a single backtrack point (the last `*`): a later `*` supersedes an earlier one,
/// so the work is at most pattern length × host length, never exponential, whatever run of `*`
/// a tenant's known_hosts holds.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it currently stands for the end of.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(b'?') => {
                pi += 1;
                ti += 1;
            }
            Some(c) if c.eq_ignore_ascii_case(&t[ti]) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more character and retry after it.
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    pi = sp + 1;
                    ti = st + 1;
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

fn hashed_matches(pattern: &str, label: &str) -> bool {
    let mut parts = pattern.trim_start_matches("|1|").splitn(2, '|');
    let (Some(salt), Some(hash)) = (parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (
        openssl::base64::decode_block(salt),
        openssl::base64::decode_block(hash),
    ) else {
        return false;
    };
    let Ok(key) = PKey::hmac(&salt) else {
        return false;
    };
    let Ok(mut signer) = Signer::new(MessageDigest::sha1(), &key) else {
        return false;
    };
    signer.update(label.as_bytes()).is_ok() && signer.sign_to_vec().is_ok_and(|mac| mac == hash)
}

/// Whether a comma-separated host pattern list names `label` (negations win).
fn hosts_match(patterns: &str, label: &str) -> bool {
    let mut matched = false;
    for p in patterns.split(',') {
        let (negated, p) = match p.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, p),
        };
        let hit = if p.starts_with("|1|") {
            hashed_matches(p, label)
        } else {
            glob(p, label)
        };
        if hit && negated {
            return false;
        }
        matched |= hit;
    }
    matched
}

/// Checks the host key `key_type` + `key` (the SSH wire-format blob) presented by `host:port`.
pub fn verify(
    known_hosts: &str,
    host: &str,
    port: u16,
    key_type: &str,
    key: &[u8],
) -> HostKeyVerdict {
    let label = host_label(host, port);
    let mut listed = false;
    let mut trusted = false;
    for line in known_hosts
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let mut fields = line.split_whitespace();
        let Some(mut first) = fields.next() else {
            continue;
        };
        let marker = first.strip_prefix('@').map(str::to_owned);
        if marker.is_some() {
            match fields.next() {
                Some(f) => first = f,
                None => continue,
            }
        }
        let (Some(ty), Some(b64)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !hosts_match(first, &label) {
            continue;
        }
        let same_key = ty == key_type && openssl::base64::decode_block(b64).is_ok_and(|k| k == key);
        match marker.as_deref() {
            Some("revoked") if same_key => return HostKeyVerdict::Revoked,
            Some(_) => {}
            None => {
                listed = true;
                trusted |= same_key;
            }
        }
    }
    match (trusted, listed) {
        (true, _) => HostKeyVerdict::Trusted,
        (false, true) => HostKeyVerdict::Mismatch,
        (false, false) => HostKeyVerdict::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    const OTHER: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";

    fn key() -> Vec<u8> {
        openssl::base64::decode_block(KEY).unwrap()
    }

    #[test]
    fn plain_and_port_patterns() {
        let kh = format!("github.com ssh-ed25519 {KEY}\n[127.0.0.1]:2222 ssh-ed25519 {KEY}\n");
        assert_eq!(
            verify(&kh, "github.com", 22, "ssh-ed25519", &key()),
            HostKeyVerdict::Trusted
        );
        assert_eq!(
            verify(&kh, "127.0.0.1", 2222, "ssh-ed25519", &key()),
            HostKeyVerdict::Trusted
        );
        assert_eq!(
            verify(&kh, "127.0.0.1", 22, "ssh-ed25519", &key()),
            HostKeyVerdict::Unknown
        );
        assert_eq!(
            verify(&kh, "gitlab.com", 22, "ssh-ed25519", &key()),
            HostKeyVerdict::Unknown
        );
    }

    #[test]
    fn a_different_key_for_a_known_host_is_a_mismatch() {
        let kh = format!("github.com ssh-ed25519 {OTHER}\n");
        assert_eq!(
            verify(&kh, "github.com", 22, "ssh-ed25519", &key()),
            HostKeyVerdict::Mismatch
        );
        assert_eq!(
            verify(&kh, "github.com", 22, "ssh-rsa", &key()),
            HostKeyVerdict::Mismatch
        );
    }

    #[test]
    fn glob_matches_wildcards_like_openssh() {
        for (p, t, want) in [
            ("*", "", true),
            ("*", "github.com", true),
            ("*.example.com", "git.example.com", true),
            ("*.example.com", "example.com", false),
            ("git?.example.com", "git1.example.com", true),
            ("git?.example.com", "git.example.com", false),
            ("GitHub.COM", "github.com", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("[127.0.0.1]:*", "[127.0.0.1]:2222", true),
            ("**a", "a", true),
            ("", "a", false),
            ("a", "", false),
        ] {
            assert_eq!(glob(p, t), want, "{p:?} vs {t:?}");
        }
    }

    #[test]
    fn glob_on_star_runs_finishes_quickly() {
        // The recursive matcher took exponential time here; this one does |p|·|t| steps at most.
        let pattern = format!("{}b", "*a".repeat(2000));
        let host = "a".repeat(255);
        assert!(!glob(&pattern, &host));
        let kh = format!("{pattern} ssh-ed25519 {KEY}\n").repeat(200);
        assert_eq!(
            verify(&kh, &host, 22, "ssh-ed25519", &key()),
            HostKeyVerdict::Unknown
        );
    }

    #[test]
    fn hashed_wildcard_negated_and_revoked_entries() {
        // `ssh-keygen -H` form for "github.com": HMAC-SHA1 keyed by the salt.
        let salt = [7u8; 20];
        let pkey = PKey::hmac(&salt).unwrap();
        let mut s = Signer::new(MessageDigest::sha1(), &pkey).unwrap();
        s.update(b"github.com").unwrap();
        let hashed = format!(
            "|1|{}|{}",
            openssl::base64::encode_block(&salt),
            openssl::base64::encode_block(&s.sign_to_vec().unwrap())
        );
        let kh = format!("{hashed} ssh-ed25519 {KEY}\n");
        assert_eq!(
            verify(&kh, "github.com", 22, "ssh-ed25519", &key()),
            HostKeyVerdict::Trusted
        );
        assert_eq!(
            verify(&kh, "github.org", 22, "ssh-ed25519", &key()),
            HostKeyVerdict::Unknown
        );

        let kh = format!("*.example.com,!bad.example.com ssh-ed25519 {KEY}\n");
        assert_eq!(
            verify(&kh, "git.example.com", 22, "ssh-ed25519", &key()),
            HostKeyVerdict::Trusted
        );
        assert_eq!(
            verify(&kh, "bad.example.com", 22, "ssh-ed25519", &key()),
            HostKeyVerdict::Unknown
        );

        let kh = format!("@revoked * ssh-ed25519 {KEY}\ngithub.com ssh-ed25519 {KEY}\n");
        assert_eq!(
            verify(&kh, "github.com", 22, "ssh-ed25519", &key()),
            HostKeyVerdict::Revoked
        );
    }
}

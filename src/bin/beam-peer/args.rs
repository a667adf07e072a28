//! Parsing and checking the command line's values: node names, addresses,
//! durations, and the unique names of commands that join a cluster unnamed.
//!
//! Everything here is pure (no I/O but reading the process id), so each
//! malformed value has a unit test and a message that says what was expected.

use std::net::SocketAddr;
use std::time::Duration;

/// A full node name `alive@host`, as the node to talk to must be given.
pub fn full_node_name(s: &str) -> Result<String, String> {
    let Some((alive, host)) = s.split_once('@') else {
        return Err(format!(
            "{s:?} has no host: a node is named alive@host, e.g. {s}@127.0.0.1"
        ));
    };
    check_alive(alive)?;
    if host.is_empty() || host.contains('@') {
        return Err(format!(
            "{s:?}: the host after '@' must be one non-empty host name or address"
        ));
    }
    Ok(s.to_string())
}

/// Our own name: `alive@host`, or a bare `alive` (the node adds this
/// machine's host name, as `erl -sname` does).
pub fn own_node_name(s: &str) -> Result<String, String> {
    if s.contains('@') {
        full_node_name(s)
    } else {
        check_alive(s).map(|()| s.to_string())
    }
}

fn check_alive(alive: &str) -> Result<(), String> {
    if alive.is_empty() {
        return Err("the name before '@' is empty".into());
    }
    // EPMD takes up to 255 bytes; the BEAM allows letters, digits, '_' and '-'.
    if alive.len() > 255
        || !alive
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!(
            "{alive:?}: the name before '@' takes letters, digits, '_' and '-' (at most 255)"
        ));
    }
    Ok(())
}

/// `ADDR:PORT`, an IP address and a port (`[::1]:4370` for IPv6).
pub fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!("{s:?} is not ADDR:PORT (an IP address and a port, e.g. 127.0.0.1:4370)")
    })
}

/// `NAME=ADDR:PORT`: where a node listens, for `--no-epmd`.
pub fn peer_addr(s: &str) -> Result<(String, SocketAddr), String> {
    let Some((name, addr)) = s.split_once('=') else {
        return Err(format!(
            "{s:?} is not NAME=ADDR:PORT (e.g. app@127.0.0.1=127.0.0.1:4370)"
        ));
    };
    Ok((full_node_name(name)?, socket_addr(addr)?))
}

/// A duration with its unit: `500ms`, `5s`, `1m`, `1m 30s`.
pub fn duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration ({e}); give a unit: 500ms, 5s, 1m"))?;
    if d.is_zero() {
        return Err(format!("{s:?}: the duration must be more than zero"));
    }
    Ok(d)
}

/// A name for a node that was given none: `PREFIX_<os pid>_<random>@HOST`,
/// so parallel runs (or runs in containers where every process is pid 1)
/// never ask EPMD for the same name. `host` `None` gives a bare name, which
/// the node completes with this machine's host name (short names).
pub fn unique_name(prefix: &str, host: Option<&str>) -> String {
    let alive = format!(
        "{prefix}_{}_{:04x}",
        std::process::id(),
        rand::random::<u16>()
    );
    match host {
        Some(h) => format!("{alive}@{h}"),
        None => alive,
    }
}

/// The host part for an unnamed node that talks to `peer`: a BEAM node with
/// long names (a host with a dot, or an address) only talks to long names,
/// one with short names only to short names.
pub fn host_like(peer: &str) -> Option<&'static str> {
    let host = peer.split_once('@').map(|(_, h)| h).unwrap_or_default();
    if host.contains('.') || host.contains(':') {
        Some("127.0.0.1")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        assert_eq!(full_node_name("a@h").as_deref(), Ok("a@h"));
        let e = full_node_name("rusty").unwrap_err();
        assert!(
            e.contains("has no host") && e.contains("rusty@127.0.0.1"),
            "{e}"
        );
        assert!(full_node_name("@h").unwrap_err().contains("empty"));
        assert!(full_node_name("a@").unwrap_err().contains("host"));
        assert!(full_node_name("a@b@c").unwrap_err().contains("host"));
        assert!(full_node_name("a b@h").unwrap_err().contains("letters"));
        assert_eq!(own_node_name("bare").as_deref(), Ok("bare"));
        assert!(own_node_name("").is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(
            socket_addr("127.0.0.1:4370"),
            Ok(([127, 0, 0, 1], 4370).into())
        );
        assert!(socket_addr("[::1]:1").is_ok());
        for bad in ["127.0.0.1", "localhost:4370", "1.2.3.4:99999", ":1", ""] {
            assert!(socket_addr(bad).unwrap_err().contains("ADDR:PORT"), "{bad}");
        }
        let (n, a) = peer_addr("x@h=10.0.0.1:5").expect("parses");
        assert_eq!((n.as_str(), a), ("x@h", ([10, 0, 0, 1], 5).into()));
        assert!(peer_addr("x@h").unwrap_err().contains("NAME=ADDR:PORT"));
        assert!(peer_addr("x=1.2.3.4:5").unwrap_err().contains("no host"));
    }

    #[test]
    fn durations() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(duration("1m 30s"), Ok(Duration::from_secs(90)));
        for bad in ["5", "five", "", "-1s", "5 parsecs"] {
            assert!(
                duration(bad).unwrap_err().contains("not a duration"),
                "{bad}"
            );
        }
        assert!(duration("0s").unwrap_err().contains("more than zero"));
    }

    #[test]
    fn unique_names_differ_and_follow_the_peer_naming() {
        let a = unique_name("beam_peer_ping", Some("127.0.0.1"));
        let b = unique_name("beam_peer_ping", Some("127.0.0.1"));
        assert_ne!(a, b);
        assert!(full_node_name(&a).is_ok(), "{a}");
        assert!(own_node_name(&unique_name("x", None)).is_ok());
        assert_eq!(host_like("a@127.0.0.1"), Some("127.0.0.1"));
        assert_eq!(host_like("a@host.example"), Some("127.0.0.1"));
        assert_eq!(host_like("a@myhost"), None);
    }
}

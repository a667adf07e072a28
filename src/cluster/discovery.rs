//! Where polling strategies find their candidates: a fixed list, the EPMD of
//! each host in a `.hosts.erlang` file, the local EPMD, and DNS.
//!
//! Each source answers one question, "which nodes now?", with node names or
//! a reason it could not. The `.hosts.erlang` reader and the name building
//! are pure and unit-tested; the lookups are thin I/O. What a source must
//! never do: decide to connect (that is [`super::membership`]'s), or fail a
//! topology for one unreachable host (that host is skipped and logged).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long one lookup (an EPMD listing, a DNS query) may take.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The hosts a `.hosts.erlang` file names: Erlang terms, each an atom
/// (`'host.example'.` or `host.`) or a string (`"host".`) ended by a dot;
/// `%` starts a comment. A term of another kind is an error naming it, as
/// `net_adm:host_file/0` fails on a file it cannot consult.
pub fn parse_hosts_erlang(text: &str) -> Result<Vec<String>, String> {
    let mut hosts = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        // Skip blanks and comments.
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                chars.next();
            } else if c == '%' {
                while chars.next().is_some_and(|c| c != '\n') {}
            } else {
                break;
            }
        }
        let Some(&first) = chars.peek() else {
            return Ok(hosts);
        };
        let host = match first {
            '\'' | '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("unterminated {first}{s}")),
                        Some('\\') => match chars.next() {
                            Some(c) => s.push(c),
                            None => return Err(format!("unterminated {first}{s}")),
                        },
                        Some(c) if c == first => break,
                        Some(c) => s.push(c),
                    }
                }
                s
            }
            c if c.is_ascii_lowercase() => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' || c == '@' {
                        s.push(c);
                        chars.next();
                    } else if c == '.' {
                        // A dot inside an unquoted atom is part of it only
                        // when a name character follows (`a.b`); else it ends the term.
                        let mut ahead = chars.clone();
                        ahead.next();
                        match ahead.peek() {
                            Some(n) if n.is_ascii_alphanumeric() => {
                                s.push('.');
                                chars.next();
                            }
                            _ => break,
                        }
                    } else {
                        break;
                    }
                }
                s
            }
            other => {
                let rest: String = chars.take(20).collect();
                return Err(format!(
                    "expected a host name (an atom or a string), found {other:?} in {rest:?}"
                ));
            }
        };
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            Some('.') => hosts.push(host),
            other => return Err(format!("expected '.' after {host:?}, found {other:?}")),
        }
    }
}

/// `net_adm:host_file/0`'s search: `.hosts.erlang` in the current directory,
/// then in `$HOME`.
pub fn find_hosts_file() -> Option<PathBuf> {
    let mut dirs = vec![PathBuf::from(".")];
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home));
    }
    dirs.into_iter()
        .map(|d| d.join(".hosts.erlang"))
        .find(|p| p.is_file())
}

pub fn read_hosts_file(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_hosts_erlang(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The nodes registered in the EPMD on `host` (port `epmd_port`), named
/// `name@host` as `net_adm:names/1` and libcluster name them.
pub async fn epmd_nodes(host: &str, epmd_port: u16) -> Result<Vec<String>, String> {
    let addr = resolve_host(host, epmd_port).await?;
    let names = crate::epmd::names(addr)
        .await
        .map_err(|e| format!("EPMD on {host}: {e}"))?;
    Ok(names
        .into_iter()
        .map(|(n, _)| format!("{n}@{host}"))
        .collect())
}

async fn resolve_host(host: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let mut addrs = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| format!("resolving {host} timed out"))?
        .map_err(|e| format!("resolving {host}: {e}"))?;
    addrs.next().ok_or_else(|| format!("{host} has no address"))
}

/// `basename@ip` as libcluster writes it (`:inet_parse.ntoa/1`: dotted
/// quads, and IPv6 in its shortest form, which `Display` also gives).
pub fn ip_node(basename: &str, ip: IpAddr) -> String {
    format!("{basename}@{ip}")
}

/// `basename@target` for an SRV target, without the root's trailing dot
/// (`inet_res` gives names without it).
pub fn srv_node(basename: &str, target: &str) -> String {
    format!("{basename}@{}", target.trim_end_matches('.'))
}

#[cfg(feature = "dns")]
pub use dns::Dns;

#[cfg(feature = "dns")]
mod dns {
    use super::*;
    use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    use hickory_resolver::proto::rr::RData;
    use hickory_resolver::TokioResolver;

    /// A resolver: the system's, or one asking `nameservers` only.
    pub struct Dns {
        resolver: TokioResolver,
    }

    impl Dns {
        pub fn new(nameservers: &[SocketAddr]) -> Result<Dns, String> {
            let provider = TokioRuntimeProvider::default();
            let mut builder = if nameservers.is_empty() {
                TokioResolver::builder(provider).map_err(|e| format!("system resolver: {e}"))?
            } else {
                let servers = nameservers
                    .iter()
                    .map(|a| {
                        let mut c = NameServerConfig::udp_and_tcp(a.ip());
                        for conn in &mut c.connections {
                            conn.port = a.port();
                        }
                        c
                    })
                    .collect();
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(servers),
                    provider,
                )
            };
            let opts: &mut ResolverOpts = builder.options_mut();
            // A poll must see the records as they are now: the polling
            // interval is the cache.
            opts.cache_size = 0;
            opts.timeout = Duration::from_secs(2);
            opts.attempts = 2;
            let resolver = builder.build().map_err(|e| format!("resolver: {e}"))?;
            Ok(Dns { resolver })
        }

        /// A and (with `aaaa`) AAAA addresses of `name`; none is not an error.
        pub async fn ips(&self, name: &str, aaaa: bool) -> Result<Vec<IpAddr>, String> {
            let mut out = Vec::new();
            let mut kinds = vec![hickory_resolver::proto::rr::RecordType::A];
            if aaaa {
                kinds.push(hickory_resolver::proto::rr::RecordType::AAAA);
            }
            let mut last_err = None;
            for kind in kinds {
                match self.lookup(name, kind).await {
                    Ok(records) => out.extend(records.into_iter().filter_map(|r| match r {
                        RData::A(a) => Some(IpAddr::V4(a.0)),
                        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                        _ => None,
                    })),
                    Err(e) => last_err = Some(e),
                }
            }
            match (out.is_empty(), last_err) {
                (true, Some(e)) if !aaaa => Err(e),
                _ => Ok(out),
            }
        }

        /// The targets of `name`'s SRV records.
        pub async fn srv_targets(&self, name: &str) -> Result<Vec<String>, String> {
            let records = self
                .lookup(name, hickory_resolver::proto::rr::RecordType::SRV)
                .await?;
            Ok(records
                .into_iter()
                .filter_map(|r| match r {
                    RData::SRV(s) => Some(s.target.to_string()),
                    _ => None,
                })
                .collect())
        }

        async fn lookup(
            &self,
            name: &str,
            kind: hickory_resolver::proto::rr::RecordType,
        ) -> Result<Vec<RData>, String> {
            match tokio::time::timeout(LOOKUP_TIMEOUT, self.resolver.lookup(name, kind)).await {
                Err(_) => Err(format!("{kind} lookup of {name} timed out")),
                Ok(Ok(l)) => Ok(l.answers().iter().map(|r| r.data.clone()).collect()),
                Ok(Err(e)) if e.is_no_records_found() || e.is_nx_domain() => Ok(vec![]),
                Ok(Err(e)) => Err(format!("{kind} lookup of {name}: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_erlang_atoms_strings_and_comments() {
        let text = "% the cluster\n'super.eua.ericsson.se'.\nrenat.eua.ericsson.se.\n\"127.0.0.1\". localhost .\n";
        assert_eq!(
            parse_hosts_erlang(text).unwrap(),
            [
                "super.eua.ericsson.se",
                "renat.eua.ericsson.se",
                "127.0.0.1",
                "localhost"
            ]
        );
        assert_eq!(parse_hosts_erlang("").unwrap(), Vec::<String>::new());
        assert!(parse_hosts_erlang("'a'").is_err());
        assert!(parse_hosts_erlang("{a, b}.").is_err());
        assert!(parse_hosts_erlang("'a").is_err());
    }

    #[test]
    fn node_names_as_libcluster_writes_them() {
        assert_eq!(
            ip_node("app", "127.0.0.2".parse().unwrap()),
            "app@127.0.0.2"
        );
        assert_eq!(ip_node("app", "::1".parse().unwrap()), "app@::1");
        assert_eq!(
            srv_node("app", "app-0.app.default.svc.cluster.local."),
            "app@app-0.app.default.svc.cluster.local"
        );
    }
}

//! The topologies' configuration: libcluster's strategy names and config
//! keys as Rust values, and the one place that checks a key/value list
//! (from a TOML file or elsewhere) against them.
//!
//! What it must never do: accept a key it does not know (a typo would be a
//! topology that silently does nothing) or a value of the wrong kind.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// libcluster's Gossip defaults.
pub const GOSSIP_PORT: u16 = 45892;
pub const GOSSIP_MULTICAST_ADDR: Ipv4Addr = Ipv4Addr::new(233, 252, 1, 32);
/// libcluster's `polling_interval` default for the DNS strategies.
pub const DEFAULT_POLLING_INTERVAL: Duration = Duration::from_millis(5_000);

/// `Cluster.Strategy.Epmd`: connect to a fixed list of nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpmdConfig {
    pub hosts: Vec<String>,
    /// libcluster's `timeout`: connect again every this long (`None`,
    /// libcluster's `:infinity`: only at start; dropped nodes are still
    /// retried, on their back-off).
    pub timeout: Option<Duration>,
}

/// `Cluster.Strategy.ErlangHosts`: every node registered in the EPMD of each
/// host a `.hosts.erlang` file names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErlangHostsConfig {
    pub timeout: Option<Duration>,
    /// Ours: the file to read. Without it, `.hosts.erlang` in the current
    /// directory, then in `$HOME`, as `net_adm:host_file/0` looks.
    pub hosts_file: Option<PathBuf>,
}

/// `Cluster.Strategy.LocalEpmd`: every node in this host's EPMD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEpmdConfig {
    /// Ours: look again every this long (libcluster looks once, at start).
    pub polling_interval: Duration,
}

impl Default for LocalEpmdConfig {
    fn default() -> Self {
        LocalEpmdConfig {
            polling_interval: DEFAULT_POLLING_INTERVAL,
        }
    }
}

/// `Cluster.Strategy.Gossip`: UDP heartbeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GossipConfig {
    pub port: u16,
    /// The address the socket binds to (default 0.0.0.0).
    pub if_addr: Ipv4Addr,
    /// The interface multicast goes out of and is joined on.
    pub multicast_if: Option<Ipv4Addr>,
    /// Where heartbeats are sent (the broadcast address with `broadcast_only`).
    pub multicast_addr: Ipv4Addr,
    pub multicast_ttl: u32,
    pub broadcast_only: bool,
    pub secret: Option<String>,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            port: GOSSIP_PORT,
            if_addr: Ipv4Addr::UNSPECIFIED,
            multicast_if: None,
            multicast_addr: GOSSIP_MULTICAST_ADDR,
            multicast_ttl: 1,
            broadcast_only: false,
            secret: None,
        }
    }
}

/// `Cluster.Strategy.DNSPoll`: `node_basename@IP` for each A and AAAA
/// record of `query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsPollConfig {
    pub query: String,
    pub node_basename: String,
    pub polling_interval: Duration,
    /// Ours: the name servers to ask (default: the system's, /etc/resolv.conf).
    pub nameservers: Vec<SocketAddr>,
}

/// `Cluster.Strategy.Kubernetes.DNS`: `application_name@IP` for each A
/// record of the headless `service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesDnsConfig {
    pub service: String,
    pub application_name: String,
    pub polling_interval: Duration,
    pub nameservers: Vec<SocketAddr>,
}

/// `Cluster.Strategy.Kubernetes.DNSSRV`: `application_name@TARGET` for each
/// SRV record of `SERVICE.NAMESPACE.svc.CLUSTER_DOMAIN`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesDnsSrvConfig {
    pub service: String,
    pub namespace: String,
    pub application_name: String,
    pub polling_interval: Duration,
    /// libcluster reads `CLUSTER_DOMAIN` from the environment (default
    /// `cluster.local.`); here it is a key too, and the environment the default.
    pub cluster_domain: Option<String>,
    pub nameservers: Vec<SocketAddr>,
}

/// libcluster's Kubernetes defaults.
pub const DEFAULT_MASTER: &str = "kubernetes.default.svc";
pub const DEFAULT_SERVICE_ACCOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// `kubernetes_ip_lookup_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupMode {
    Endpoints,
    Pods,
}

/// `mode`: how an address becomes a node name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameMode {
    Ip,
    Dns,
    Hostname,
}

/// `Cluster.Strategy.Kubernetes`: the API server's endpoints or pods matching
/// `kubernetes_selector`. `kubernetes_master` may end in `:PORT` (ours).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesConfig {
    pub selector: String,
    pub node_basename: String,
    pub namespace: Option<String>,
    pub service_name: Option<String>,
    pub cluster_name: String,
    pub ip_lookup_mode: LookupMode,
    pub master: String,
    pub service_account_path: PathBuf,
    pub mode: NameMode,
    pub polling_interval: Duration,
}

/// One topology's strategy, named as libcluster names its modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Strategy {
    Epmd(EpmdConfig),
    ErlangHosts(ErlangHostsConfig),
    LocalEpmd(LocalEpmdConfig),
    Gossip(GossipConfig),
    DnsPoll(DnsPollConfig),
    KubernetesDns(KubernetesDnsConfig),
    KubernetesDnsSrv(KubernetesDnsSrvConfig),
    Kubernetes(KubernetesConfig),
}

impl Strategy {
    /// libcluster's module name without `Cluster.Strategy.`.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Epmd(_) => "Epmd",
            Strategy::ErlangHosts(_) => "ErlangHosts",
            Strategy::LocalEpmd(_) => "LocalEpmd",
            Strategy::Gossip(_) => "Gossip",
            Strategy::DnsPoll(_) => "DNSPoll",
            Strategy::KubernetesDns(_) => "Kubernetes.DNS",
            Strategy::KubernetesDnsSrv(_) => "Kubernetes.DNSSRV",
            Strategy::Kubernetes(_) => "Kubernetes",
        }
    }
}

/// A config value, whatever file format it came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<Value>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Bool(_) => "a boolean",
            Value::List(_) => "a list",
        }
    }
}

/// A strategy or key that cannot be used; the message names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown strategy {strategy:?} (known: {known})")]
    UnknownStrategy { strategy: String, known: String },
    #[error("strategy {strategy:?} is libcluster's but not built here yet")]
    NotBuilt { strategy: String },
    #[error("unknown key {key:?} for strategy {strategy} (known: {known})")]
    UnknownKey {
        strategy: &'static str,
        key: String,
        known: String,
    },
    #[error("key {key:?}: {message}")]
    BadValue { key: String, message: String },
    #[error("strategy {strategy} needs key {key:?}")]
    Missing {
        strategy: &'static str,
        key: &'static str,
    },
}

/// The strategies [`Strategy::from_config`] builds.
pub const STRATEGIES: &[&str] = &[
    "Epmd",
    "ErlangHosts",
    "LocalEpmd",
    "Gossip",
    "DNSPoll",
    "Kubernetes.DNS",
    "Kubernetes.DNSSRV",
    "Kubernetes",
];

struct Keys<'a> {
    strategy: &'static str,
    pairs: &'a [(String, Value)],
}

impl<'a> Keys<'a> {
    fn check(&self, known: &[&str]) -> Result<(), ConfigError> {
        for (k, _) in self.pairs {
            if !known.contains(&k.as_str()) {
                return Err(ConfigError::UnknownKey {
                    strategy: self.strategy,
                    key: k.clone(),
                    known: known.join(", "),
                });
            }
        }
        Ok(())
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn bad(key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::BadValue {
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(v) => Err(Self::bad(
                key,
                format!("expected a string, got {}", v.kind()),
            )),
        }
    }

    fn required(&self, key: &'static str) -> Result<String, ConfigError> {
        match self.string(key)? {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(Self::bad(key, "must not be empty")),
            None => Err(ConfigError::Missing {
                strategy: self.strategy,
                key,
            }),
        }
    }

    fn int(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Int(n)) if (min..=max).contains(n) => Ok(Some(*n)),
            Some(Value::Int(n)) => Err(Self::bad(key, format!("{n} is not in {min}..={max}"))),
            Some(v) => Err(Self::bad(
                key,
                format!("expected an integer, got {}", v.kind()),
            )),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(Self::bad(
                key,
                format!("expected a boolean, got {}", v.kind()),
            )),
        }
    }

    /// Milliseconds, as libcluster takes them.
    fn millis(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        Ok(self
            .int(key, 1, i64::from(u32::MAX))?
            .map(|n| Duration::from_millis(n as u64)))
    }

    /// libcluster's `timeout`: milliseconds, or `"infinity"`.
    fn timeout(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        match self.get(key) {
            Some(Value::Str(s)) if s == "infinity" => Ok(None),
            Some(Value::Str(s)) => Err(Self::bad(
                key,
                format!("{s:?}: expected milliseconds or \"infinity\""),
            )),
            _ => self.millis(key),
        }
    }

    fn ipv4(&self, key: &str) -> Result<Option<Ipv4Addr>, ConfigError> {
        match self.string(key)? {
            None => Ok(None),
            Some(s) => s
                .parse()
                .map(Some)
                .map_err(|_| Self::bad(key, format!("{s:?} is not an IPv4 address"))),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        match self.get(key) {
            None => Ok(vec![]),
            Some(Value::List(items)) => items
                .iter()
                .map(|v| match v {
                    Value::Str(s) => Ok(s.clone()),
                    v => Err(Self::bad(
                        key,
                        format!("expected a list of strings, found {}", v.kind()),
                    )),
                })
                .collect(),
            Some(v) => Err(Self::bad(key, format!("expected a list, got {}", v.kind()))),
        }
    }

    fn nameservers(&self) -> Result<Vec<SocketAddr>, ConfigError> {
        self.strings("nameservers")?
            .into_iter()
            .map(|s| {
                s.parse::<SocketAddr>()
                    .or_else(|_| {
                        s.parse::<std::net::IpAddr>()
                            .map(|ip| SocketAddr::new(ip, 53))
                    })
                    .map_err(|_| Self::bad("nameservers", format!("{s:?} is not IP or IP:PORT")))
            })
            .collect()
    }
}

impl Strategy {
    /// Builds a strategy from libcluster's name (without `Cluster.Strategy.`;
    /// the full module name is taken too) and its `config` keys.
    pub fn from_config(strategy: &str, pairs: &[(String, Value)]) -> Result<Strategy, ConfigError> {
        let bare = strategy.strip_prefix("Elixir.").unwrap_or(strategy);
        let short = bare.strip_prefix("Cluster.Strategy.").unwrap_or(bare);
        let name = match STRATEGIES.iter().find(|s| **s == short) {
            Some(s) => *s,
            None if short == "Rancher" => {
                return Err(ConfigError::NotBuilt {
                    strategy: short.to_string(),
                })
            }
            None => {
                return Err(ConfigError::UnknownStrategy {
                    strategy: strategy.to_string(),
                    known: STRATEGIES.join(", "),
                })
            }
        };
        let k = Keys {
            strategy: name,
            pairs,
        };
        Ok(match name {
            "Epmd" => {
                k.check(&["hosts", "timeout"])?;
                let hosts = k.strings("hosts")?;
                for h in &hosts {
                    if crate::node::split_node_name(h).is_none() {
                        return Err(Keys::bad("hosts", format!("{h:?} is not name@host")));
                    }
                }
                Strategy::Epmd(EpmdConfig {
                    hosts,
                    timeout: k.timeout("timeout")?,
                })
            }
            "ErlangHosts" => {
                k.check(&["timeout", "hosts_file"])?;
                Strategy::ErlangHosts(ErlangHostsConfig {
                    timeout: k.timeout("timeout")?,
                    hosts_file: k.string("hosts_file")?.map(PathBuf::from),
                })
            }
            "LocalEpmd" => {
                k.check(&["polling_interval"])?;
                Strategy::LocalEpmd(LocalEpmdConfig {
                    polling_interval: k
                        .millis("polling_interval")?
                        .unwrap_or(DEFAULT_POLLING_INTERVAL),
                })
            }
            "Gossip" => {
                k.check(&[
                    "port",
                    "if_addr",
                    "multicast_if",
                    "multicast_addr",
                    "multicast_ttl",
                    "broadcast_only",
                    "secret",
                ])?;
                let d = GossipConfig::default();
                Strategy::Gossip(GossipConfig {
                    port: k.int("port", 1, 65535)?.map_or(d.port, |p| p as u16),
                    if_addr: k.ipv4("if_addr")?.unwrap_or(d.if_addr),
                    multicast_if: k.ipv4("multicast_if")?,
                    multicast_addr: k.ipv4("multicast_addr")?.unwrap_or(d.multicast_addr),
                    multicast_ttl: k
                        .int("multicast_ttl", 0, 255)?
                        .map_or(d.multicast_ttl, |t| t as u32),
                    broadcast_only: k.bool("broadcast_only")?.unwrap_or(false),
                    secret: k.string("secret")?,
                })
            }
            "DNSPoll" => {
                k.check(&["query", "node_basename", "polling_interval", "nameservers"])?;
                Strategy::DnsPoll(DnsPollConfig {
                    query: k.required("query")?,
                    node_basename: k.required("node_basename")?,
                    polling_interval: k
                        .millis("polling_interval")?
                        .unwrap_or(DEFAULT_POLLING_INTERVAL),
                    nameservers: k.nameservers()?,
                })
            }
            "Kubernetes.DNS" => {
                k.check(&[
                    "service",
                    "application_name",
                    "polling_interval",
                    "nameservers",
                ])?;
                Strategy::KubernetesDns(KubernetesDnsConfig {
                    service: k.required("service")?,
                    application_name: k.required("application_name")?,
                    polling_interval: k
                        .millis("polling_interval")?
                        .unwrap_or(DEFAULT_POLLING_INTERVAL),
                    nameservers: k.nameservers()?,
                })
            }
            "Kubernetes" => {
                k.check(&[
                    "kubernetes_selector",
                    "kubernetes_node_basename",
                    "kubernetes_namespace",
                    "kubernetes_service_name",
                    "kubernetes_cluster_name",
                    "kubernetes_ip_lookup_mode",
                    "kubernetes_master",
                    "kubernetes_service_account_path",
                    "mode",
                    "polling_interval",
                ])?;
                let ip_lookup_mode = match k.string("kubernetes_ip_lookup_mode")?.as_deref() {
                    None | Some("endpoints") => LookupMode::Endpoints,
                    Some("pods") => LookupMode::Pods,
                    Some(o) => {
                        return Err(Keys::bad(
                            "kubernetes_ip_lookup_mode",
                            format!("{o:?}: expected \"endpoints\" or \"pods\""),
                        ))
                    }
                };
                let mode = match k.string("mode")?.as_deref() {
                    None | Some("ip") => NameMode::Ip,
                    Some("dns") => NameMode::Dns,
                    Some("hostname") => NameMode::Hostname,
                    Some(o) => {
                        return Err(Keys::bad(
                            "mode",
                            format!("{o:?}: expected \"ip\", \"dns\" or \"hostname\""),
                        ))
                    }
                };
                Strategy::Kubernetes(KubernetesConfig {
                    selector: k.required("kubernetes_selector")?,
                    node_basename: k.required("kubernetes_node_basename")?,
                    namespace: k.string("kubernetes_namespace")?,
                    service_name: k.string("kubernetes_service_name")?,
                    cluster_name: k
                        .string("kubernetes_cluster_name")?
                        .unwrap_or_else(|| "cluster".into()),
                    ip_lookup_mode,
                    master: k
                        .string("kubernetes_master")?
                        .unwrap_or_else(|| DEFAULT_MASTER.into()),
                    service_account_path: k
                        .string("kubernetes_service_account_path")?
                        .unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT_PATH.into())
                        .into(),
                    mode,
                    polling_interval: k
                        .millis("polling_interval")?
                        .unwrap_or(DEFAULT_POLLING_INTERVAL),
                })
            }
            _ => {
                k.check(&[
                    "service",
                    "namespace",
                    "application_name",
                    "polling_interval",
                    "cluster_domain",
                    "nameservers",
                ])?;
                Strategy::KubernetesDnsSrv(KubernetesDnsSrvConfig {
                    service: k.required("service")?,
                    namespace: k.required("namespace")?,
                    application_name: k.required("application_name")?,
                    polling_interval: k
                        .millis("polling_interval")?
                        .unwrap_or(DEFAULT_POLLING_INTERVAL),
                    cluster_domain: k.string("cluster_domain")?,
                    nameservers: k.nameservers()?,
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(pairs: &[(&str, Value)]) -> Vec<(String, Value)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn gossip_defaults_are_libclusters() {
        let s = Strategy::from_config("Gossip", &[]).unwrap();
        assert_eq!(s, Strategy::Gossip(GossipConfig::default()));
        let s = Strategy::from_config(
            "Cluster.Strategy.Gossip",
            &kv(&[
                ("port", Value::Int(4000)),
                ("multicast_if", Value::Str("127.0.0.1".into())),
                ("secret", Value::Str("x".into())),
            ]),
        )
        .unwrap();
        let Strategy::Gossip(g) = s else { panic!() };
        assert_eq!(g.port, 4000);
        assert_eq!(g.multicast_if, Some(Ipv4Addr::LOCALHOST));
        assert_eq!(g.secret.as_deref(), Some("x"));
        assert_eq!(g.multicast_addr, Ipv4Addr::new(233, 252, 1, 32));
    }

    #[test]
    fn unknown_strategies_and_keys_are_named() {
        let e = Strategy::from_config("Gosip", &[]).unwrap_err();
        assert!(e.to_string().contains("\"Gosip\""), "{e}");
        let e = Strategy::from_config("Gossip", &kv(&[("prot", Value::Int(1))])).unwrap_err();
        assert!(e.to_string().contains("\"prot\""), "{e}");
        assert!(e.to_string().contains("Gossip"), "{e}");
        let e = Strategy::from_config("Rancher", &[]).unwrap_err();
        assert!(matches!(e, ConfigError::NotBuilt { .. }));
        let e = Strategy::from_config("Kubernetes", &kv(&[("mode", Value::Str("x".into()))]))
            .unwrap_err();
        assert!(e.to_string().contains("\"mode\""), "{e}");
        let e =
            Strategy::from_config("Gossip", &kv(&[("port", Value::Str("1".into()))])).unwrap_err();
        assert!(e.to_string().contains("\"port\""), "{e}");
        let e = Strategy::from_config("DNSPoll", &kv(&[("query", Value::Str("q".into()))]))
            .unwrap_err();
        assert!(e.to_string().contains("node_basename"), "{e}");
    }

    #[test]
    fn epmd_hosts_and_timeout() {
        let s = Strategy::from_config(
            "Epmd",
            &kv(&[
                ("hosts", Value::List(vec![Value::Str("a@127.0.0.1".into())])),
                ("timeout", Value::Int(30_000)),
            ]),
        )
        .unwrap();
        assert_eq!(
            s,
            Strategy::Epmd(EpmdConfig {
                hosts: vec!["a@127.0.0.1".into()],
                timeout: Some(Duration::from_secs(30)),
            })
        );
        let inf = Strategy::from_config("Epmd", &kv(&[("timeout", Value::Str("infinity".into()))]));
        assert!(matches!(
            inf,
            Ok(Strategy::Epmd(EpmdConfig { timeout: None, .. }))
        ));
        let bad = Strategy::from_config(
            "Epmd",
            &kv(&[("hosts", Value::List(vec![Value::Str("nohost".into())]))]),
        );
        assert!(bad.is_err());
    }

    #[test]
    fn nameservers_take_ip_or_ip_port() {
        let s = Strategy::from_config(
            "Kubernetes.DNS",
            &kv(&[
                ("service", Value::Str("svc".into())),
                ("application_name", Value::Str("app".into())),
                (
                    "nameservers",
                    Value::List(vec![
                        Value::Str("127.0.0.1:5353".into()),
                        Value::Str("10.0.0.1".into()),
                    ]),
                ),
            ]),
        )
        .unwrap();
        let Strategy::KubernetesDns(c) = s else {
            panic!()
        };
        assert_eq!(
            c.nameservers,
            vec![
                "127.0.0.1:5353".parse().unwrap(),
                "10.0.0.1:53".parse().unwrap()
            ]
        );
    }
}

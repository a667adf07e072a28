//! `--topology FILE`: libcluster's topologies in TOML, one table per
//! topology under `[topologies.NAME]` with `strategy` (libcluster's module
//! name without `Cluster.Strategy.`) and a `[topologies.NAME.config]` table
//! of libcluster's keys. Every key is checked: an unknown table, key or
//! strategy is refused with the file and the key's full path in the message.

use std::path::Path;

use beam_peer::cluster::{Strategy, Topology, Value};

/// The topologies `text` (read from `file`, named in errors) describes.
pub fn parse(file: &Path, text: &str) -> Result<Vec<Topology>, String> {
    let f = file.display();
    let doc: toml::Table = text.parse().map_err(|e| format!("{f}: {e}"))?;
    let mut out = Vec::new();
    for (key, v) in &doc {
        if key != "topologies" {
            return Err(format!(
                "{f}: unknown key {key:?} (the file holds [topologies.NAME] tables)"
            ));
        }
        let Some(tops) = v.as_table() else {
            return Err(format!("{f}: \"topologies\" must be a table of tables"));
        };
        for (name, t) in tops {
            let path = format!("topologies.{name}");
            let Some(t) = t.as_table() else {
                return Err(format!("{f}: {path} must be a table"));
            };
            let mut strategy = None;
            let mut pairs = Vec::new();
            for (k, v) in t {
                match (k.as_str(), v) {
                    ("strategy", toml::Value::String(s)) => strategy = Some(s.clone()),
                    ("strategy", _) => return Err(format!("{f}: {path}.strategy must be a string")),
                    ("config", toml::Value::Table(c)) => {
                        for (ck, cv) in c {
                            let value = value(cv).map_err(|e| format!("{f}: {path}.config.{ck}: {e}"))?;
                            pairs.push((ck.clone(), value));
                        }
                    }
                    ("config", _) => return Err(format!("{f}: {path}.config must be a table")),
                    (other, _) => {
                        return Err(format!(
                            "{f}: unknown key {path}.{other} (a topology has \"strategy\" and \"config\")"
                        ))
                    }
                }
            }
            let Some(strategy) = strategy else {
                return Err(format!("{f}: {path} has no \"strategy\""));
            };
            let s = Strategy::from_config(&strategy, &pairs).map_err(|e| {
                let e = e.to_string();
                // Say where the bad key sits, not only its name.
                format!("{f}: {path}: {e}")
            })?;
            out.push(Topology::new(name.clone(), s));
        }
    }
    Ok(out)
}

pub fn read(file: &Path) -> Result<Vec<Topology>, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    parse(file, &text)
}

fn value(v: &toml::Value) -> Result<Value, String> {
    Ok(match v {
        toml::Value::String(s) => Value::Str(s.clone()),
        toml::Value::Integer(n) => Value::Int(*n),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Array(items) => {
            Value::List(items.iter().map(value).collect::<Result<_, _>>()?)
        }
        toml::Value::Float(_) => {
            return Err("floats are not taken (milliseconds are integers)".into())
        }
        toml::Value::Datetime(_) => return Err("dates are not taken".into()),
        toml::Value::Table(_) => return Err("a table is not taken here".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Vec<Topology>, String> {
        parse(Path::new("cluster.toml"), text)
    }

    #[test]
    fn the_issue_example_and_several_topologies() {
        let t = p(r#"
[topologies.gossip]
strategy = "Gossip"
[topologies.gossip.config]
port = 45892
multicast_if = "127.0.0.1"
secret = "s"

[topologies.epmd]
strategy = "Cluster.Strategy.Epmd"
config = { hosts = ["a@127.0.0.1", "b@127.0.0.1"], timeout = 30000 }
"#)
        .unwrap();
        let names: Vec<_> = t
            .iter()
            .map(|t| (t.name.as_str(), t.strategy.name()))
            .collect();
        assert_eq!(names, [("epmd", "Epmd"), ("gossip", "Gossip")]);
    }

    #[test]
    fn unknown_things_are_refused_naming_file_and_key() {
        let e = p("[topologies.g]\nstrategy = \"Gossip\"\n[topologies.g.config]\nprot = 1\n")
            .unwrap_err();
        assert!(
            e.contains("cluster.toml") && e.contains("topologies.g") && e.contains("\"prot\""),
            "{e}"
        );
        let e = p("[topologies.g]\nstrategy = \"Gosip\"\n").unwrap_err();
        assert!(e.contains("cluster.toml") && e.contains("\"Gosip\""), "{e}");
        let e = p("[topologies.g]\nstrategy = \"Gossip\"\nconfg = {}\n").unwrap_err();
        assert!(e.contains("topologies.g.confg"), "{e}");
        let e = p("[topology.g]\nstrategy = \"Gossip\"\n").unwrap_err();
        assert!(e.contains("\"topology\""), "{e}");
        let e = p("[topologies.g]\nconfig = {}\n").unwrap_err();
        assert!(e.contains("no \"strategy\""), "{e}");
        let e = p("[topologies.g]\nstrategy = \"DNSPoll\"\nconfig = { polling_interval = 1.5 }\n")
            .unwrap_err();
        assert!(e.contains("topologies.g.config.polling_interval"), "{e}");
        let e = p("[topologies.g]\nstrategy = \"Rancher\"\n").unwrap_err();
        assert!(e.contains("not built"), "{e}");
    }
}

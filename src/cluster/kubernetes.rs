//! libcluster's `Kubernetes` strategy: the API server's endpoints (or pods)
//! matching `kubernetes_selector`, each made a node name by `mode`.
//!
//! The request path, the response parsing (HTTP/1.1, chunked or not, and
//! the JSON) and the node names are pure and unit-tested; [`fetch`] is the
//! one HTTPS GET. What it must never do: talk to an API server it cannot
//! verify (libcluster falls back to no verification without `ca.crt`; we
//! refuse and say so), or take more than [`MAX_BODY`] bytes from it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;

pub use super::config::{KubernetesConfig, LookupMode, NameMode};

pub use super::config::{DEFAULT_MASTER, DEFAULT_SERVICE_ACCOUNT_PATH};
pub const MAX_BODY: usize = 16 << 20;
const TIMEOUT: Duration = Duration::from_secs(15);

/// One address the API server lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAddress {
    pub ip: String,
    pub namespace: String,
    pub hostname: Option<String>,
}

/// `host:port` of the master as libcluster builds its URL: the name as
/// given when it ends with the cluster domain or with a dot (the dot
/// dropped), else with `.CLUSTER_DOMAIN` appended; port 443 unless the
/// name carries one (ours, for tests and proxies).
pub fn master_authority(master: &str, cluster_domain: &str) -> (String, u16) {
    let (name, port) = match master.rsplit_once(':') {
        Some((h, p)) if p.trim_end_matches('.').parse::<u16>().is_ok() => (
            h.to_string(),
            p.trim_end_matches('.').parse().unwrap_or(443),
        ),
        _ => (master.to_string(), 443),
    };
    let host = if name.ends_with(cluster_domain) {
        name
    } else if let Some(n) = name.strip_suffix('.') {
        n.to_string()
    } else if master.ends_with('.') {
        name
    } else {
        format!("{name}.{cluster_domain}")
    };
    (host, port)
}

/// `URI.encode/1`: every byte but unreserved and reserved characters escaped.
pub fn uri_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn request_path(mode: LookupMode, namespace: &str, selector: &str) -> String {
    let what = match mode {
        LookupMode::Endpoints => "endpoints",
        LookupMode::Pods => "pods",
    };
    format!(
        "/api/v1/namespaces/{namespace}/{what}?labelSelector={}",
        uri_encode(selector)
    )
}

/// The addresses in an endpoints or pods list, as libcluster reads them
/// (entries of another shape are skipped).
pub fn parse_addresses(mode: LookupMode, body: &Json) -> Vec<PodAddress> {
    let Some(items) = body.get("items").and_then(Json::as_array) else {
        return vec![];
    };
    let s = |v: Option<&Json>| v.and_then(Json::as_str).map(str::to_string);
    let mut out = Vec::new();
    for item in items {
        match mode {
            LookupMode::Endpoints => {
                for subset in item
                    .get("subsets")
                    .and_then(Json::as_array)
                    .into_iter()
                    .flatten()
                {
                    for a in subset
                        .get("addresses")
                        .and_then(Json::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let ns = s(a.get("targetRef").and_then(|t| t.get("namespace")));
                        if let (Some(ip), Some(namespace)) = (s(a.get("ip")), ns) {
                            out.push(PodAddress {
                                ip,
                                namespace,
                                hostname: s(a.get("hostname")),
                            });
                        }
                    }
                }
            }
            LookupMode::Pods => {
                let ip = s(item.get("status").and_then(|st| st.get("podIP")));
                let ns = s(item.get("metadata").and_then(|m| m.get("namespace")));
                if let (Some(ip), Some(namespace), Some(spec)) = (ip, ns, item.get("spec")) {
                    out.push(PodAddress {
                        ip,
                        namespace,
                        hostname: s(spec.get("hostname")),
                    });
                }
            }
        }
    }
    out
}

/// libcluster's `format_node/5`.
pub fn node_name(c: &KubernetesConfig, a: &PodAddress) -> String {
    let app = &c.node_basename;
    let cluster = &c.cluster_name;
    match c.mode {
        NameMode::Ip => format!("{app}@{}", a.ip),
        NameMode::Dns => format!(
            "{app}@{}.{}.pod.{cluster}.local",
            a.ip.replace('.', "-"),
            a.namespace
        ),
        NameMode::Hostname => format!(
            "{app}@{}.{}.{}.svc.{cluster}.local",
            a.hostname.as_deref().unwrap_or(""),
            c.service_name.as_deref().unwrap_or(""),
            a.namespace
        ),
    }
}

/// Status and body of an HTTP/1.1 response read to its end.
pub fn parse_http(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "headers are not text")?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or("no status line")?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &raw[end + 4..];
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok((status, out));
        }
        if rest.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// What one poll of the API server found: `Some(nodes)` (empty on 403, as
/// libcluster takes an unauthorized answer), `None` when it could not say
/// (logged by the caller from the error).
pub async fn fetch(c: &KubernetesConfig) -> Result<Vec<String>, String> {
    let sa = &c.service_account_path;
    let token = read_trimmed(&sa.join("token")).unwrap_or_default();
    let namespace = c
        .namespace
        .clone()
        .or_else(|| read_trimmed(&sa.join("namespace")))
        .unwrap_or_default();
    let ca_path = sa.join("ca.crt");
    let cluster_domain =
        std::env::var("CLUSTER_DOMAIN").unwrap_or_else(|_| format!("{}.local", c.cluster_name));
    let (host, port) = master_authority(&c.master, &cluster_domain);
    let path = request_path(c.ip_lookup_mode, &namespace, &c.selector);

    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(&ca_path).map_err(|e| {
        format!(
            "{}: {e} (the API server's CA is needed: we do not talk to it unverified)",
            ca_path.display()
        )
    })?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", ca_path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca_path.display()))?;
    }
    // ring's provider by name: rustls's own default needs aws-lc-rs, a C
    // build we do not want for one HTTPS GET.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let server_name =
        rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    let raw = tokio::time::timeout(TIMEOUT, async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("{host}:{port}: {e}"))?;
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 16384];
        loop {
            match tls.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                // Servers often close without close_notify after Connection: close.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e.to_string()),
            }
            if raw.len() > MAX_BODY {
                return Err(format!("answer larger than {MAX_BODY} bytes"));
            }
        }
        Ok(raw)
    })
    .await
    .map_err(|_| format!("request to {host}:{port} timed out"))??;
    let (status, body) = parse_http(&raw)?;
    match status {
        200 => {
            let json: Json =
                serde_json::from_slice(&body).map_err(|e| format!("answer is not JSON: {e}"))?;
            Ok(parse_addresses(c.ip_lookup_mode, &json)
                .iter()
                .map(|a| node_name(c, a))
                .collect())
        }
        403 => {
            let msg = serde_json::from_slice::<Json>(&body)
                .ok()
                .and_then(|j| j.get("message").and_then(Json::as_str).map(str::to_string))
                .unwrap_or_default();
            tracing::warn!("cannot query kubernetes (unauthorized): {msg}");
            Ok(vec![])
        }
        code => Err(format!(
            "cannot query kubernetes ({code}): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mode: NameMode) -> KubernetesConfig {
        KubernetesConfig {
            selector: "app=myapp".into(),
            node_basename: "myapp".into(),
            namespace: None,
            service_name: Some("myapp-headless".into()),
            cluster_name: "cluster".into(),
            ip_lookup_mode: LookupMode::Endpoints,
            master: DEFAULT_MASTER.into(),
            service_account_path: DEFAULT_SERVICE_ACCOUNT_PATH.into(),
            mode,
            polling_interval: Duration::from_secs(5),
        }
    }

    #[test]
    fn master_as_libcluster_builds_it() {
        assert_eq!(
            master_authority("kubernetes.default.svc", "cluster.local"),
            ("kubernetes.default.svc.cluster.local".into(), 443)
        );
        assert_eq!(
            master_authority("api.example.", "cluster.local"),
            ("api.example".into(), 443)
        );
        assert_eq!(
            master_authority("localhost:8443.", "cluster.local"),
            ("localhost".into(), 8443)
        );
        assert_eq!(
            master_authority("k.svc.cluster.local", "cluster.local"),
            ("k.svc.cluster.local".into(), 443)
        );
    }

    #[test]
    fn path_and_selector_encoding() {
        assert_eq!(
            request_path(LookupMode::Pods, "default", "app=my app,tier in (web)"),
            "/api/v1/namespaces/default/pods?labelSelector=app=my%20app,tier%20in%20(web)"
        );
    }

    #[test]
    fn endpoints_and_pods_to_node_names_in_each_mode() {
        let endpoints: Json = serde_json::from_str(
            r#"{"kind":"EndpointsList","items":[{"subsets":[{"addresses":[
                {"ip":"10.0.0.1","hostname":"myapp-0","targetRef":{"kind":"Pod","namespace":"prod"}},
                {"ip":"10.0.0.2","targetRef":{"kind":"Pod","namespace":"prod"}},
                {"ip":"10.0.0.3"}]},{"notReadyAddresses":[]}]},{"metadata":{}}]}"#,
        )
        .unwrap();
        let a = parse_addresses(LookupMode::Endpoints, &endpoints);
        assert_eq!(a.len(), 2);
        assert_eq!(node_name(&config(NameMode::Ip), &a[0]), "myapp@10.0.0.1");
        assert_eq!(
            node_name(&config(NameMode::Dns), &a[1]),
            "myapp@10-0-0-2.prod.pod.cluster.local"
        );
        assert_eq!(
            node_name(&config(NameMode::Hostname), &a[0]),
            "myapp@myapp-0.myapp-headless.prod.svc.cluster.local"
        );
        let pods: Json = serde_json::from_str(
            r#"{"items":[{"metadata":{"namespace":"prod"},"spec":{"hostname":"h"},"status":{"podIP":"10.0.0.9"}},
                        {"metadata":{"namespace":"prod"},"spec":{},"status":{"phase":"Pending"}}]}"#,
        )
        .unwrap();
        let p = parse_addresses(LookupMode::Pods, &pods);
        assert_eq!(
            p,
            vec![PodAddress {
                ip: "10.0.0.9".into(),
                namespace: "prod".into(),
                hostname: Some("h".into())
            }]
        );
        assert!(parse_addresses(LookupMode::Pods, &serde_json::json!({"items": 3})).is_empty());
    }

    #[test]
    fn http_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(parse_http(plain).unwrap(), (200, b"{}".to_vec()));
        let chunked = b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4;x=1\r\n\":1}\r\n0\r\n\r\n";
        assert_eq!(parse_http(chunked).unwrap(), (403, b"{\"a\":1}".to_vec()));
        assert!(parse_http(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(
            parse_http(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }
}

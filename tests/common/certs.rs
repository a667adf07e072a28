//! Certificates the TLS tests make: a CA, and leaves it signs with the
//! names OTP and rustls check for a node on 127.0.0.1 (IP 127.0.0.1, DNS
//! localhost and 127.0.0.1), written as PEM files with the OTP `ssl_dist_optfile` that
//! uses them.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A CA that signs leaves, with its certificate written to `dir/NAME.pem`.
pub struct Ca {
    pub cert: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    dir: PathBuf,
}

/// A leaf certificate and its key on disk.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A fresh directory for one test's files, under the target's tmp dir.
/// (Also used by `benches/dist.rs`, so nothing else of `common` is needed.)
pub fn dir(test: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{test}_{}_{n}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tls test dir");
    d
}

impl Ca {
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("beam_peer test CA {name}"));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA cert");
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, cert.pem()).expect("write CA");
        Ca {
            cert: path,
            issuer: Issuer::new(params, key),
            dir: dir.to_owned(),
        }
    }

    /// A leaf for server and client use, valid now, named 127.0.0.1 and localhost.
    pub fn leaf(&self, name: &str) -> Leaf {
        self.leaf_with(name, false, None)
    }

    /// A leaf whose validity ended in 2021.
    pub fn expired_leaf(&self, name: &str) -> Leaf {
        self.leaf_with(name, true, None)
    }

    /// A valid leaf that names only the DNS name `dns` (no address).
    pub fn leaf_for_host(&self, name: &str, dns: &str) -> Leaf {
        self.leaf_with(name, false, Some(dns))
    }

    fn leaf_with(&self, name: &str, expired: bool, only: Option<&str>) -> Leaf {
        let mut params = CertificateParams::new(vec![only.unwrap_or("localhost").to_string()])
            .expect("leaf params");
        if only.is_none() {
            params
                .subject_alt_names
                .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
            // OTP 25 checks a node at an IP address against the certificate's
            // DNS names (its server_name_indication is the host string), so
            // certificates for such nodes carry the address as a DNS name too.
            params.subject_alt_names.push(SanType::DnsName(
                "127.0.0.1".try_into().expect("an IA5 string"),
            ));
        }
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        } else {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        let leaf = Leaf {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}.key")),
        };
        std::fs::write(&leaf.cert, cert.pem()).expect("write leaf");
        std::fs::write(&leaf.key, key.serialize_pem()).expect("write key");
        leaf
    }
}

/// What one side of an optfile says.
pub struct Side<'a> {
    pub leaf: Option<&'a Leaf>,
    pub ca: &'a Path,
    /// Extra options, Erlang syntax, each `{Name, Value}`.
    pub extra: &'a [&'a str],
}

fn side_opts(s: &Side<'_>, server: bool) -> String {
    let mut opts = Vec::new();
    if let Some(l) = s.leaf {
        opts.push(format!("{{certfile, {:?}}}", l.cert.display().to_string()));
        opts.push(format!("{{keyfile, {:?}}}", l.key.display().to_string()));
    }
    opts.push(format!("{{cacertfile, {:?}}}", s.ca.display().to_string()));
    opts.push("{verify, verify_peer}".into());
    if server {
        opts.push("{fail_if_no_peer_cert, true}".into());
    }
    opts.extend(s.extra.iter().map(|e| e.to_string()));
    format!("[{}]", opts.join(", "))
}

/// Writes an optfile: `verify_peer` both sides, `fail_if_no_peer_cert` on
/// the server, and each side's extra options.
pub fn optfile(path: &Path, server: Side<'_>, client: Side<'_>) -> PathBuf {
    let text = format!(
        "%% written by the beam_peer TLS tests\n[{{server, {}}},\n {{client, {}}}].\n",
        side_opts(&server, true),
        side_opts(&client, false)
    );
    std::fs::write(path, text).expect("write optfile");
    path.to_owned()
}

/// The usual optfile for `leaf`: the same certificate as server and client.
pub fn optfile_for(dir: &Path, name: &str, leaf: &Leaf, ca: &Path, extra: &[&str]) -> PathBuf {
    optfile(
        &dir.join(format!("{name}.conf")),
        Side {
            leaf: Some(leaf),
            ca,
            extra,
        },
        Side {
            leaf: Some(leaf),
            ca,
            extra,
        },
    )
}

//! Distribution over TLS, as OTP's `inet_tls_dist` (`-proto_dist inet_tls`)
//! runs it: a plain TCP connection, then a TLS handshake on it (we are the
//! TLS server on connections we accept, the client on those we open), then
//! the ordinary distribution handshake, frames and ticks inside TLS. EPMD is
//! unchanged: OTP's TLS nodes register exactly as TCP nodes do (protocol 0,
//! no extra), so a peer cannot tell from EPMD which one it will meet.
//!
//! This module owns the options of each side ([`TlsOptions`], in the words
//! of OTP's `ssl` options), reading them from OTP's own `ssl_dist_optfile`
//! ([`TlsConfig::from_optfile`]), and turning them into rustls
//! configurations. It checks everything at start: files that do not read,
//! keys that do not match, and every option we do not support, by name.
//! It must never accept a peer OTP would refuse under the same options, nor
//! silently drop an option that would make OTP refuse one.
//!
//! How OTP 25 behaves, and so do we:
//! - `versions` defaults to `['tlsv1.2']` for distribution (not `ssl`'s own
//!   default); `'tlsv1.3'` must be asked for.
//! - `verify` defaults to `verify_none` on both sides (OTP 25's `ssl`
//!   default; it warns, and so do we). With `verify_peer` the client checks
//!   the server's chain against `cacertfile` and its name against the host
//!   part of the node name (an IP address against the certificate's IP
//!   names, a host name against its DNS names), or against
//!   `server_name_indication` when that is a string; `disable` skips the
//!   name check.
//! - A server with `verify_peer` asks for the client's certificate and
//!   checks its chain; without `fail_if_no_peer_cert` a client without one
//!   is let in. `{verify_fun, {inet_tls_dist, verify_client, _}}` also
//!   checks that the client's certificate names the address it connects
//!   from.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::term::{self, Term};

/// Why a TLS configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("ssl_dist_optfile {path}: {reason}")]
    Optfile { path: PathBuf, reason: String },
    #[error("{side} option {option}: {reason}")]
    Option {
        side: Side,
        option: String,
        reason: String,
    },
    #[error("{side}: {reason}")]
    Config { side: Side, reason: String },
}

/// Which end of a TLS connection options are for: OTP's `server` and
/// `client` sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Server,
    Client,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Server => "server",
            Side::Client => "client",
        })
    }
}

/// OTP's `verify` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// Check the peer's certificate chain (and, on the client, its name).
    VerifyPeer,
    /// Accept any certificate: OTP 25's default, and no security.
    #[default]
    VerifyNone,
}

/// A TLS protocol version, as OTP names them in `versions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// The client's `server_name_indication`: what it checks the server's
/// certificate against.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ServerNameIndication {
    /// The host part of the node name we connect to (OTP's behaviour).
    #[default]
    NodeHost,
    /// This name, for every server.
    Name(String),
    /// No SNI and no name check (chain checks still apply).
    Disable,
}

/// The options of one side, named as OTP's `ssl` options are.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Our certificate, PEM, optionally followed by its chain. Required on
    /// the server.
    pub certfile: Option<PathBuf>,
    /// Our private key, PEM (PKCS#8, PKCS#1 or SEC1). Without it the key is
    /// read from `certfile`, as OTP does.
    pub keyfile: Option<PathBuf>,
    /// The CAs a peer's certificate must chain to, PEM.
    pub cacertfile: Option<PathBuf>,
    pub verify: Verify,
    /// Server only: with `verify_peer`, a client without a certificate is
    /// refused.
    pub fail_if_no_peer_cert: bool,
    /// Empty means OTP's distribution default, TLS 1.2 only.
    pub versions: Vec<TlsVersion>,
    /// Client only.
    pub server_name_indication: ServerNameIndication,
    /// `false` turns session resumption off.
    pub reuse_sessions: bool,
    /// Server only: `{verify_fun, {inet_tls_dist, verify_client, _}}`, the
    /// client's certificate must name the address it connects from.
    pub verify_client_address: bool,
}

impl TlsOptions {
    /// OTP's defaults: no certificate, `verify_none`, TLS 1.2.
    pub fn new() -> Self {
        TlsOptions {
            reuse_sessions: true,
            ..Default::default()
        }
    }

    pub fn certfile(mut self, path: impl Into<PathBuf>) -> Self {
        self.certfile = Some(path.into());
        self
    }

    pub fn keyfile(mut self, path: impl Into<PathBuf>) -> Self {
        self.keyfile = Some(path.into());
        self
    }

    pub fn cacertfile(mut self, path: impl Into<PathBuf>) -> Self {
        self.cacertfile = Some(path.into());
        self
    }

    /// `verify_peer` (with `true`) or `verify_none`.
    pub fn verify_peer(mut self, on: bool) -> Self {
        self.verify = if on {
            Verify::VerifyPeer
        } else {
            Verify::VerifyNone
        };
        self
    }

    pub fn fail_if_no_peer_cert(mut self, on: bool) -> Self {
        self.fail_if_no_peer_cert = on;
        self
    }

    pub fn versions(mut self, versions: &[TlsVersion]) -> Self {
        self.versions = versions.to_vec();
        self
    }

    pub fn server_name_indication(mut self, sni: ServerNameIndication) -> Self {
        self.server_name_indication = sni;
        self
    }

    pub fn verify_client_address(mut self, on: bool) -> Self {
        self.verify_client_address = on;
        self
    }
}

/// Distribution over TLS for a node ([`NodeConfig::tls`](crate::NodeConfig::tls)):
/// both sides' options, checked and turned into rustls configurations.
/// Cheap to clone.
#[derive(Clone)]
pub struct TlsConfig {
    inner: Arc<Built>,
}

struct Built {
    acceptor: tokio_rustls::TlsAcceptor,
    connector: tokio_rustls::TlsConnector,
    sni: ServerNameIndication,
    verify_client_address: bool,
    summary: String,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("summary", &self.inner.summary)
            .finish()
    }
}

impl TlsConfig {
    /// Checks both sides' options and reads their files.
    pub fn new(server: TlsOptions, client: TlsOptions) -> Result<TlsConfig, TlsError> {
        let provider = provider();
        let server_config = server_config(&server, &provider)?;
        let client_config = client_config(&client, &provider)?;
        let summary = format!(
            "server: {}, client: {}",
            describe_side(&server, Side::Server),
            describe_side(&client, Side::Client)
        );
        Ok(TlsConfig {
            inner: Arc::new(Built {
                acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server_config)),
                connector: tokio_rustls::TlsConnector::from(Arc::new(client_config)),
                sni: client.server_name_indication.clone(),
                verify_client_address: server.verify_client_address,
                summary,
            }),
        })
    }

    /// Reads OTP's `ssl_dist_optfile` (`[{server, Opts}, {client, Opts}].`),
    /// the file `erl -ssl_dist_optfile FILE` takes. Relative paths in it are
    /// taken as the BEAM takes them, from the current directory.
    pub fn from_optfile(path: impl AsRef<Path>) -> Result<TlsConfig, TlsError> {
        let path = path.as_ref();
        let optfile = |reason: String| TlsError::Optfile {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| optfile(e.to_string()))?;
        let (server, client) = parse_optfile(&text).map_err(|e| match e {
            OptfileError::Syntax(reason) => optfile(reason),
            OptfileError::Tls(e) => e,
        })?;
        TlsConfig::new(server, client)
    }

    /// What the configuration does, in one line for logs.
    pub fn summary(&self) -> &str {
        &self.inner.summary
    }

    pub(crate) fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.inner.acceptor
    }

    pub(crate) fn connector(&self) -> &tokio_rustls::TlsConnector {
        &self.inner.connector
    }

    /// The name a connection to `host` (a node name's host part) checks the
    /// server's certificate against.
    pub(crate) fn server_name(&self, host: &str) -> Result<ServerName<'static>, String> {
        let name = match &self.inner.sni {
            ServerNameIndication::Name(n) => n.as_str(),
            // Any valid name: the verifier ignores it.
            ServerNameIndication::Disable | ServerNameIndication::NodeHost => host,
        };
        ServerName::try_from(name.to_owned())
            .map_err(|_| format!("TLS: {name:?} is neither a host name nor an IP address"))
    }

    /// After an accepted handshake: with `verify_client_address`, whether
    /// the client's certificate names the address it came from.
    pub(crate) fn check_client_address(
        &self,
        certs: Option<&[CertificateDer<'_>]>,
        from: IpAddr,
    ) -> Result<(), String> {
        if !self.inner.verify_client_address {
            return Ok(());
        }
        let Some(leaf) = certs.and_then(|c| c.first()) else {
            // No certificate was let in only without fail_if_no_peer_cert.
            return Ok(());
        };
        let cert = rustls::server::ParsedCertificate::try_from(leaf)
            .map_err(|e| format!("TLS: the peer's certificate does not parse: {e}"))?;
        rustls::client::verify_server_name(&cert, &ServerName::IpAddress(from.into())).map_err(
            |_| {
                format!(
                    "TLS: the peer's certificate does not name {from}, the address it connects \
                     from (verify_client: cert_no_hostname_nor_ip_match)"
                )
            },
        )
    }
}

/// rustls's ring provider. rustls 0.23.48 deprecates it for lacking
/// post-quantum key exchange, which no OTP release up to 27 offers for
/// distribution anyway (they agree on X25519 or the NIST curves, which ring
/// has); ring builds here with no system dependencies, aws-lc-rs would not.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn describe_side(o: &TlsOptions, side: Side) -> String {
    let versions = if o.versions.is_empty() {
        "tlsv1.2".to_string()
    } else {
        o.versions
            .iter()
            .map(|v| match v {
                TlsVersion::Tls12 => "tlsv1.2",
                TlsVersion::Tls13 => "tlsv1.3",
            })
            .collect::<Vec<_>>()
            .join("+")
    };
    let verify = match (o.verify, side, o.fail_if_no_peer_cert) {
        (Verify::VerifyNone, _, _) => "verify_none",
        (Verify::VerifyPeer, Side::Server, true) => "verify_peer+fail_if_no_peer_cert",
        (Verify::VerifyPeer, _, _) => "verify_peer",
    };
    format!("{verify} {versions}")
}

fn versions(o: &TlsOptions) -> Vec<&'static rustls::SupportedProtocolVersion> {
    if o.versions.is_empty() {
        return vec![&rustls::version::TLS12];
    }
    let mut out = Vec::new();
    // rustls prefers in the order given; OTP prefers the newest it shares.
    if o.versions.contains(&TlsVersion::Tls13) {
        out.push(&rustls::version::TLS13);
    }
    if o.versions.contains(&TlsVersion::Tls12) {
        out.push(&rustls::version::TLS12);
    }
    out
}

fn file_error(path: &Path, reason: impl fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, pem_reason(e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, pem_reason(e)))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn pem_reason(e: rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(e) => e.to_string(),
        other => format!("not PEM: {other:?}"),
    }
}

fn read_key(o: &TlsOptions, side: Side) -> Result<PrivateKeyDer<'static>, TlsError> {
    let Some(path) = o.keyfile.as_ref().or(o.certfile.as_ref()) else {
        return Err(TlsError::Config {
            side,
            reason: "keyfile is missing".into(),
        });
    };
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => file_error(
            path,
            "no unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1) in it",
        ),
        e => file_error(path, pem_reason(e)),
    })
}

fn roots(o: &TlsOptions, side: Side) -> Result<Option<Arc<RootCertStore>>, TlsError> {
    let Some(path) = &o.cacertfile else {
        if o.verify == Verify::VerifyPeer {
            return Err(TlsError::Config {
                side,
                reason: "verify_peer needs cacertfile (the CAs a peer's certificate must chain to)"
                    .into(),
            });
        }
        return Ok(None);
    };
    let mut store = RootCertStore::empty();
    for cert in read_certs(path)? {
        store
            .add(cert)
            .map_err(|e| file_error(path, format!("a CA certificate is unusable: {e}")))?;
    }
    Ok(Some(Arc::new(store)))
}

fn config_error(side: Side) -> impl Fn(rustls::Error) -> TlsError {
    move |e| TlsError::Config {
        side,
        reason: e.to_string(),
    }
}

fn server_config(
    o: &TlsOptions,
    provider: &Arc<CryptoProvider>,
) -> Result<rustls::ServerConfig, TlsError> {
    let side = Side::Server;
    if o.server_name_indication != ServerNameIndication::NodeHost {
        return Err(option_error(
            side,
            "server_name_indication",
            "is a client option",
        ));
    }
    let Some(certfile) = &o.certfile else {
        return Err(TlsError::Config {
            side,
            reason: "certfile is missing (a TLS server needs a certificate)".into(),
        });
    };
    let certs = read_certs(certfile)?;
    let key = read_key(o, side)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(o))
        .map_err(config_error(side))?;
    let roots = roots(o, side)?;
    let builder = match (o.verify, roots) {
        (Verify::VerifyPeer, Some(roots)) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots,
                provider.clone(),
            );
            let verifier = if o.fail_if_no_peer_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError::Config {
                side,
                reason: e.to_string(),
            })?)
        }
        _ => {
            if o.fail_if_no_peer_cert {
                return Err(option_error(
                    side,
                    "fail_if_no_peer_cert",
                    "needs {verify, verify_peer}",
                ));
            }
            builder.with_no_client_auth()
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config {
            side,
            reason: format!("certfile and keyfile: {e}"),
        })?;
    if !o.reuse_sessions {
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    }
    Ok(config)
}

fn client_config(
    o: &TlsOptions,
    provider: &Arc<CryptoProvider>,
) -> Result<rustls::ClientConfig, TlsError> {
    let side = Side::Client;
    if o.fail_if_no_peer_cert {
        return Err(option_error(
            side,
            "fail_if_no_peer_cert",
            "is a server option",
        ));
    }
    if o.verify_client_address {
        return Err(option_error(
            side,
            "verify_fun",
            "{inet_tls_dist, verify_client, _} is a server option",
        ));
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions(o))
        .map_err(config_error(side))?;
    let roots = roots(o, side)?;
    let verifier: Arc<dyn ServerCertVerifier> = match (o.verify, roots) {
        (Verify::VerifyPeer, Some(roots)) => {
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                roots,
                provider.clone(),
            )
            .build()
            .map_err(|e| TlsError::Config {
                side,
                reason: e.to_string(),
            })?;
            if o.server_name_indication == ServerNameIndication::Disable {
                Arc::new(AnyName(webpki))
            } else {
                webpki
            }
        }
        _ => {
            tracing::warn!(
                "TLS distribution client with verify_none: servers' certificates are not checked \
                 (OTP 25's default; use {{verify, verify_peer}} and cacertfile)"
            );
            Arc::new(NoVerification(provider.clone()))
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &o.certfile {
        Some(certfile) => {
            let certs = read_certs(certfile)?;
            let key = read_key(o, side)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TlsError::Config {
                    side,
                    reason: format!("certfile and keyfile: {e}"),
                })?
        }
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = o.server_name_indication != ServerNameIndication::Disable;
    if !o.reuse_sessions {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(config)
}

fn option_error(side: Side, option: &str, reason: &str) -> TlsError {
    TlsError::Option {
        side,
        option: option.into(),
        reason: reason.into(),
    }
}

/// `verify_peer` with `{server_name_indication, disable}`: the chain is
/// checked, the name is not.
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `verify_none` on the client: any certificate is taken, though the
/// handshake's signatures are still checked against it.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A failed TLS handshake or TLS read, said the way an operator needs it:
/// which check refused whom.
pub(crate) fn describe(e: &std::io::Error) -> String {
    use rustls::Error as E;
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof => {
                "TLS: the peer closed the connection during the TLS handshake \
                 (a plain-TCP node, or one that refused us)"
                    .into()
            }
            _ => format!("TLS: {e}"),
        };
    };
    match tls {
        E::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "TLS: the peer's certificate is not signed by a CA in our cacertfile (unknown issuer)"
                .into()
        }
        E::InvalidCertificate(
            c @ (CertificateError::Expired | CertificateError::ExpiredContext { .. }),
        ) => format!("TLS: the peer's certificate has expired ({c})"),
        E::InvalidCertificate(c) => format!("TLS: the peer's certificate is refused: {c}"),
        E::NoCertificatesPresented => {
            "TLS: the peer presented no certificate (fail_if_no_peer_cert)".into()
        }
        E::InvalidMessage(_) | E::InappropriateMessage { .. } => format!(
            "TLS: the peer does not speak TLS (a node without -proto_dist inet_tls?): {tls}"
        ),
        E::AlertReceived(alert) => {
            format!("TLS: the peer refused the TLS handshake with alert {alert:?} (our certificate, or our versions?)")
        }
        E::PeerIncompatible(p) => format!("TLS: nothing in common with the peer: {p:?}"),
        other => format!("TLS: {other}"),
    }
}

enum OptfileError {
    Syntax(String),
    Tls(TlsError),
}

/// OTP's optfile, parsed: `[{server, Opts}, {client, Opts}]`; a missing
/// side gets OTP's defaults.
fn parse_optfile(text: &str) -> Result<(TlsOptions, TlsOptions), OptfileError> {
    let t = term::parse::parse(text).map_err(|e| OptfileError::Syntax(e.to_string()))?;
    let sections = term::as_list(&t).ok_or_else(|| {
        OptfileError::Syntax("expected a list [{server, Opts}, {client, Opts}]".into())
    })?;
    let mut server = TlsOptions::new();
    let mut client = TlsOptions::new();
    for s in &sections {
        match term::as_tuple(s) {
            Some([side, opts]) => {
                let (side, target) = match term::as_atom(side) {
                    Some("server") => (Side::Server, &mut server),
                    Some("client") => (Side::Client, &mut client),
                    _ => {
                        return Err(OptfileError::Syntax(format!(
                            "{side}: the sections are server and client"
                        )))
                    }
                };
                let opts = term::as_list(opts).ok_or_else(|| {
                    OptfileError::Syntax(format!("{side}: the options are a list"))
                })?;
                for opt in &opts {
                    apply_option(target, side, opt).map_err(OptfileError::Tls)?;
                }
            }
            _ => {
                return Err(OptfileError::Syntax(format!(
                    "{s}: expected {{server, Opts}} or {{client, Opts}}"
                )))
            }
        }
    }
    Ok((server, client))
}

/// One `{Name, Value}` of a side, or the error naming it.
fn apply_option(o: &mut TlsOptions, side: Side, opt: &Term) -> Result<(), TlsError> {
    let (name, value) = match term::as_tuple(opt) {
        Some([k, v]) => match term::as_atom(k) {
            Some(k) => (k, v),
            None => return Err(option_error(side, &k.to_string(), "option names are atoms")),
        },
        _ => {
            return Err(option_error(
                side,
                &opt.to_string(),
                "expected {Name, Value}",
            ))
        }
    };
    let bad = |why: &str| option_error(side, name, &format!("{why}, found {value}"));
    let path = || {
        term::parse::as_string(value)
            .map(PathBuf::from)
            .ok_or_else(|| bad("expected a file name string"))
    };
    let boolean = || match term::as_atom(value) {
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        _ => Err(bad("expected true or false")),
    };
    match name {
        "certfile" => o.certfile = Some(path()?),
        "keyfile" => o.keyfile = Some(path()?),
        "cacertfile" => o.cacertfile = Some(path()?),
        "verify" => {
            o.verify = match term::as_atom(value) {
                Some("verify_peer") => Verify::VerifyPeer,
                Some("verify_none") => Verify::VerifyNone,
                _ => return Err(bad("expected verify_peer or verify_none")),
            }
        }
        "fail_if_no_peer_cert" if side == Side::Server => o.fail_if_no_peer_cert = boolean()?,
        "versions" => {
            let list = term::as_list(value).ok_or_else(|| bad("expected a list of versions"))?;
            let mut versions = Vec::new();
            for v in &list {
                versions.push(match term::as_atom(v) {
                    Some("tlsv1.2") => TlsVersion::Tls12,
                    Some("tlsv1.3") => TlsVersion::Tls13,
                    Some(old @ ("tlsv1.1" | "tlsv1" | "sslv3")) => {
                        return Err(option_error(
                            side,
                            name,
                            &format!("{old} is not supported (only 'tlsv1.2' and 'tlsv1.3')"),
                        ))
                    }
                    _ => return Err(bad("expected 'tlsv1.2' and/or 'tlsv1.3'")),
                });
            }
            if versions.is_empty() {
                return Err(bad("expected at least one version"));
            }
            o.versions = versions;
        }
        "server_name_indication" if side == Side::Client => {
            o.server_name_indication = match (term::as_atom(value), term::parse::as_string(value)) {
                (Some("disable"), _) => ServerNameIndication::Disable,
                (_, Some(host)) if !host.is_empty() => ServerNameIndication::Name(host),
                _ => return Err(bad("expected a host name string or disable")),
            }
        }
        "reuse_sessions" => o.reuse_sessions = boolean()?,
        // rustls never renegotiates, so renegotiation is as secure as can
        // be whatever this says.
        "secure_renegotiate" => {
            boolean()?;
        }
        // About the BEAM process that runs a connection: nothing to do here.
        "hibernate_after" => {
            if term::as_i64(value).is_none() && !term::is_atom(value, "infinity") {
                return Err(bad("expected milliseconds"));
            }
        }
        "verify_fun" if side == Side::Server => {
            let marker = term::as_tuple(value).is_some_and(|t| {
                matches!(t, [m, f, _] if term::is_atom(m, "inet_tls_dist") && term::is_atom(f, "verify_client"))
            });
            if !marker {
                return Err(option_error(
                    side,
                    name,
                    "only {inet_tls_dist, verify_client, _} is supported (a fun cannot run here)",
                ));
            }
            o.verify_client_address = true;
        }
        "fail_if_no_peer_cert" | "server_name_indication" => {
            return Err(option_error(
                side,
                name,
                &format!(
                    "is a {} option",
                    if side == Side::Server {
                        "client"
                    } else {
                        "server"
                    }
                ),
            ))
        }
        other => {
            return Err(option_error(
                side,
                other,
                "is not supported by beam_peer (supported: certfile, keyfile, cacertfile, verify, \
                 fail_if_no_peer_cert, versions, server_name_indication, reuse_sessions, \
                 secure_renegotiate, hibernate_after, verify_fun {inet_tls_dist,verify_client,_})",
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(TlsOptions, TlsOptions), String> {
        parse_optfile(text).map_err(|e| match e {
            OptfileError::Syntax(s) => s,
            OptfileError::Tls(e) => e.to_string(),
        })
    }

    #[test]
    fn the_guides_optfile_reads() {
        let (s, c) = parse(
            r#"[{server,[{certfile,"/s/cert.pem"},{keyfile,"/s/key.pem"},
                         {cacertfile,"/ca.pem"},{verify,verify_peer},
                         {fail_if_no_peer_cert,true},{secure_renegotiate,true}]},
                {client,[{certfile,"/c/cert.pem"},{keyfile,"/c/key.pem"},
                         {cacertfile,"/ca.pem"},{verify,verify_peer},
                         {versions,['tlsv1.3','tlsv1.2']},
                         {server_name_indication,"node.example"},
                         {secure_renegotiate,true}]}]."#,
        )
        .unwrap();
        assert_eq!(s.certfile.as_deref(), Some(Path::new("/s/cert.pem")));
        assert_eq!(s.verify, Verify::VerifyPeer);
        assert!(s.fail_if_no_peer_cert);
        assert!(s.versions.is_empty());
        assert_eq!(c.versions, vec![TlsVersion::Tls13, TlsVersion::Tls12]);
        assert_eq!(
            c.server_name_indication,
            ServerNameIndication::Name("node.example".into())
        );
    }

    #[test]
    fn unsupported_options_are_refused_by_name() {
        for (text, name) in [
            (r#"[{server,[{ciphers,"x"}]}]"#, "ciphers"),
            (r#"[{client,[{password,"x"}]}]"#, "password"),
            (r#"[{server,[{crl_check,true}]}]"#, "crl_check"),
            (r#"[{server,[{depth,2}]}]"#, "depth"),
            (
                r#"[{client,[{fail_if_no_peer_cert,true}]}]"#,
                "fail_if_no_peer_cert",
            ),
            (
                r#"[{server,[{server_name_indication,disable}]}]"#,
                "server_name_indication",
            ),
            (r#"[{client,[{versions,['tlsv1.1']}]}]"#, "versions"),
            (r#"[{server,[{verify_fun,{m,f,[]}}]}]"#, "verify_fun"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(name), "{text}: {e}");
        }
        let e = parse("[{both,[]}]").unwrap_err();
        assert!(e.contains("server and client"), "{e}");
        assert!(parse("[{server,[{certfile,File}]}]")
            .unwrap_err()
            .contains("variable"));
    }

    #[test]
    fn a_server_needs_a_certificate_and_verify_peer_needs_cas() {
        let e = TlsConfig::new(TlsOptions::new(), TlsOptions::new()).unwrap_err();
        assert!(e.to_string().contains("certfile is missing"), "{e}");
        let e = client_config(&TlsOptions::new().verify_peer(true), &provider()).unwrap_err();
        assert!(e.to_string().contains("cacertfile"), "{e}");
        let e = TlsConfig::new(
            TlsOptions::new().certfile("/nonexistent/cert.pem"),
            TlsOptions::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/cert.pem"), "{e}");
    }
}

//! TLS on the listeners (`[tls]` in `inlet.toml`), with rustls: TLS 1.2 and
//! 1.3 only with rustls' default (modern) cipher suites, ALPN `h2` and
//! `http/1.1`, optional client certificates (`client_ca_file`).
//!
//! The certificate is checked at start (a missing or unreadable file, no
//! certificate or key in it, a key that is not the certificate's, a
//! certificate not valid now: each refuses the start naming the path) and
//! re-read when its files change or on SIGHUP: new handshakes get the new
//! certificate, open connections keep theirs. A replacement that fails the
//! same checks is logged and the previous certificate stays.

use crate::config::TlsConfig;
use anyhow::{Context as _, bail};
use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// How often the certificate files are looked at for a change.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// The listeners' TLS: the acceptor and the certificate it serves.
pub struct Tls {
    pub(super) acceptor: tokio_rustls::TlsAcceptor,
    certs: Arc<Certs>,
}

/// The certificate served now, and what it was read from.
#[derive(Debug)]
struct Certs {
    config: TlsConfig,
    current: ArcSwap<CertifiedKey>,
    /// The files' modification times when last read.
    seen: Mutex<Option<(SystemTime, SystemTime)>>,
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reads and checks the certificate chain and key.
fn certified_key(config: &TlsConfig) -> anyhow::Result<CertifiedKey> {
    let cert_path = &config.cert_file;
    let key_path = &config.key_file;
    let pem = std::fs::read(cert_path)
        .with_context(|| format!("[tls] cert_file {}: cannot read", cert_path.display()))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            anyhow::anyhow!(
                "[tls] cert_file {}: not PEM certificates: {e}",
                cert_path.display()
            )
        })?;
    let Some(leaf) = chain.first() else {
        bail!(
            "[tls] cert_file {}: holds no certificate (BEGIN CERTIFICATE)",
            cert_path.display()
        );
    };
    check_validity(leaf, cert_path)?;
    let pem = std::fs::read(key_path)
        .with_context(|| format!("[tls] key_file {}: cannot read", key_path.display()))?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        anyhow::anyhow!(
            "[tls] key_file {}: holds no private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}",
            key_path.display()
        )
    })?;
    let key = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| anyhow::anyhow!("[tls] key_file {}: unusable key: {e}", key_path.display()))?;
    let certified = CertifiedKey::new(chain, key);
    certified.keys_match().map_err(|_| {
        anyhow::anyhow!(
            "[tls] key_file {} is not the key of cert_file {} (they do not match)",
            key_path.display(),
            cert_path.display()
        )
    })?;
    Ok(certified)
}

/// Refuses a certificate that is expired or not valid yet.
fn check_validity(leaf: &CertificateDer<'_>, path: &Path) -> anyhow::Result<()> {
    use x509_cert::der::Decode as _;
    let cert = x509_cert::Certificate::from_der(leaf).map_err(|e| {
        anyhow::anyhow!(
            "[tls] cert_file {}: not an X.509 certificate: {e}",
            path.display()
        )
    })?;
    let validity = &cert.tbs_certificate.validity;
    let now = SystemTime::now();
    let not_after = validity.not_after.to_system_time();
    let not_before = validity.not_before.to_system_time();
    if now > not_after {
        bail!(
            "[tls] cert_file {}: the certificate expired on {}",
            path.display(),
            validity.not_after
        );
    }
    if now < not_before {
        bail!(
            "[tls] cert_file {}: the certificate is not valid before {}",
            path.display(),
            validity.not_before
        );
    }
    Ok(())
}

impl Tls {
    /// Builds the listeners' TLS from `[tls]`; any problem refuses the
    /// start, naming the file.
    pub fn load(config: &TlsConfig) -> anyhow::Result<Arc<Tls>> {
        let certs = Arc::new(Certs {
            config: config.clone(),
            current: ArcSwap::from_pointee(certified_key(config)?),
            seen: Mutex::new(Some((
                modified(&config.cert_file).unwrap_or(SystemTime::UNIX_EPOCH),
                modified(&config.key_file).unwrap_or(SystemTime::UNIX_EPOCH),
            ))),
        });
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("[tls]: protocol versions")?;
        let builder = match &config.client_ca_file {
            Some(path) => {
                let pem = std::fs::read(path).with_context(|| {
                    format!("[tls] client_ca_file {}: cannot read", path.display())
                })?;
                let mut roots = rustls::RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| {
                        anyhow::anyhow!("[tls] client_ca_file {}: not PEM: {e}", path.display())
                    })?;
                    roots.add(cert).map_err(|e| {
                        anyhow::anyhow!("[tls] client_ca_file {}: {e}", path.display())
                    })?;
                }
                if roots.is_empty() {
                    bail!(
                        "[tls] client_ca_file {}: holds no certificate",
                        path.display()
                    );
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|e| {
                            anyhow::anyhow!("[tls] client_ca_file {}: {e}", path.display())
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut server = builder.with_cert_resolver(certs.clone());
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            certs,
        }))
    }

    /// Re-reads the certificate and key; on a problem the current ones
    /// stay (logged). Returns whether the certificate changed.
    pub fn reload(&self) -> bool {
        let c = &self.certs;
        let stamps = (
            modified(&c.config.cert_file).unwrap_or(SystemTime::UNIX_EPOCH),
            modified(&c.config.key_file).unwrap_or(SystemTime::UNIX_EPOCH),
        );
        match certified_key(&c.config) {
            Ok(key) => {
                c.current.store(Arc::new(key));
                *c.seen.lock().expect("tls lock") = Some(stamps);
                tracing::info!(cert = %c.config.cert_file.display(), "TLS certificate (re)loaded; new connections use it.");
                true
            }
            Err(err) => {
                // A half-written pair is retried at the next change.
                *c.seen.lock().expect("tls lock") = Some(stamps);
                tracing::error!(error = %format!("{err:#}"), "The new TLS certificate cannot be used; the previous one stays.");
                false
            }
        }
    }

    /// Whether the files changed since they were last read.
    fn changed(&self) -> bool {
        let c = &self.certs;
        let now = (
            modified(&c.config.cert_file).unwrap_or(SystemTime::UNIX_EPOCH),
            modified(&c.config.key_file).unwrap_or(SystemTime::UNIX_EPOCH),
        );
        *c.seen.lock().expect("tls lock") != Some(now)
    }
}

/// Re-reads the certificate whenever its files change, until shutdown.
pub(super) async fn watch(tls: Arc<Tls>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(WATCH_EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
        if tls.changed() {
            tls.reload();
        }
    }
}

//! TLS on the broker's own listeners (`wss://` and STOMP over TLS), with rustls: TLS 1.2 and
//! 1.3 only, ALPN `http/1.1` on the HTTP listener. The certificate chain and key are read from
//! `server.tls_cert_file` and `server.tls_key_file`, and read again by [`Tls::reload`] (on
//! SIGHUP): handshakes from then on use the new pair, connections already open keep theirs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::{CryptoProvider, aws_lc_rs};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{ServerConfig, version};

/// Why the certificate or key cannot be used. One line, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no PEM item of the kind needed.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the pair (e.g. the key does not match, or is of an unsupported kind).
    #[error("TLS: {0}")]
    Rustls(#[from] tokio_rustls::rustls::Error),
}

/// The certificate in use, replaced whole on reload.
#[derive(Debug)]
struct Reloadable {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Reloadable {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|current| current.clone())
    }
}

/// The acceptors of the TLS listeners, sharing one reloadable certificate.
#[derive(Clone)]
pub struct Tls {
    certificate: Arc<Reloadable>,
    http: TlsAcceptor,
    stomp: TlsAcceptor,
}

impl Tls {
    /// Reads the pair and builds the acceptors.
    ///
    /// # Errors
    ///
    /// [`TlsError`] when a file cannot be read or the pair is not usable.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Tls, TlsError> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let key = certified_key(cert_file, key_file, &provider)?;
        let certificate = Arc::new(Reloadable {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            provider: provider.clone(),
            current: RwLock::new(Arc::new(key)),
        });
        let config = |alpn: &[&[u8]]| -> Result<Arc<ServerConfig>, TlsError> {
            let mut config = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&version::TLS13, &version::TLS12])?
                .with_no_client_auth()
                .with_cert_resolver(certificate.clone());
            config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(Arc::new(config))
        };
        Ok(Tls {
            http: TlsAcceptor::from(config(&[b"http/1.1"])?),
            stomp: TlsAcceptor::from(config(&[])?),
            certificate,
        })
    }

    /// Reads the pair again; on failure the current one stays in use.
    ///
    /// # Errors
    ///
    /// [`TlsError`] when the new pair cannot be used.
    pub fn reload(&self) -> Result<(), TlsError> {
        let certificate = &self.certificate;
        let key = certified_key(
            &certificate.cert_file,
            &certificate.key_file,
            &certificate.provider,
        )?;
        if let Ok(mut current) = certificate.current.write() {
            *current = Arc::new(key);
        }
        Ok(())
    }

    /// The acceptor of the HTTP and WebSocket listener.
    pub fn http(&self) -> &TlsAcceptor {
        &self.http
    }

    /// The acceptor of the STOMP over TCP listener.
    pub fn stomp(&self) -> &TlsAcceptor {
        &self.stomp
    }

    /// Reloads the pair on every SIGHUP until `shutdown`, logging the outcome.
    pub async fn reload_on_hangup(self, shutdown: tokio_util::sync::CancellationToken) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let Ok(mut hangup) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot watch SIGHUP: the TLS certificate will not be reloaded");
                return;
            };
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = hangup.recv() => match self.reload() {
                        Ok(()) => tracing::info!("TLS certificate reloaded"),
                        Err(error) => tracing::warn!(%error, "TLS certificate not reloaded; the old one stays"),
                    },
                }
            }
        }
        #[cfg(not(unix))]
        shutdown.cancelled().await;
    }
}

fn certified_key(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let file_error = |path: &Path, message: String| TlsError::File {
        path: path.to_owned(),
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_file)
        .map_err(|e| file_error(cert_file, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(cert_file, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_error(cert_file, "no PEM certificate".to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| file_error(key_file, format!("no usable PEM private key: {e}")))?;
    Ok(CertifiedKey::from_der(chain, key, provider)?)
}

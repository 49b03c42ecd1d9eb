//! TLS termination on the proxy listeners.
//!
//! The certificate and key of `[proxy.tls]` are loaded once at start-up into a
//! rustls acceptor that offers HTTP/2 and HTTP/1.1 by ALPN; the handshake runs
//! in the connection's own task, bounded in time, so a slow or silent client
//! never holds up the accept loop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::config::TlsConfig;

/// Why the TLS acceptor could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("cannot load {path}: {source}")]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::pki_types::pem::Error,
    },
    /// rustls refused the certificate and key (for example, they do not match).
    #[error("unusable certificate or key: {0}")]
    Identity(#[from] rustls::Error),
}

/// Terminates TLS on accepted connections.
#[derive(Clone)]
pub struct TlsTerminator {
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsTerminator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTerminator")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

fn load_error(path: &Path, source: rustls::pki_types::pem::Error) -> TlsError {
    TlsError::Load {
        path: path.to_path_buf(),
        source,
    }
}

impl TlsTerminator {
    /// Loads the certificate chain and key; a handshake may take `handshake_timeout`.
    pub fn new(config: &TlsConfig, handshake_timeout: Duration) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_file_iter(&config.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|source| load_error(&config.cert, source))?;
        let key = PrivateKeyDer::from_pem_file(&config.key)
            .map_err(|source| load_error(&config.key, source))?;

        // An explicit provider: the process-wide default is ambiguous when
        // more than one crypto backend is compiled in.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            handshake_timeout,
        })
    }

    /// Runs the server side of the handshake; `None` when it fails or times out.
    pub async fn handshake(
        &self,
        stream: TcpStream,
        client: SocketAddr,
    ) -> Option<TlsStream<TcpStream>> {
        match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(stream)).await {
            Ok(Ok(stream)) => Some(stream),
            Ok(Err(error)) => {
                debug!(client = %client, error = %error, "TLS handshake failed");
                None
            }
            Err(_) => {
                debug!(client = %client, "TLS handshake timed out");
                None
            }
        }
    }
}

//! TLS for the servers, with certificates re-read while serving: the certificate and key (and,
//! for mTLS, the client CA) are read from PEM files at start, again whenever one of the files
//! changes (checked every few seconds, so that cert managers' renames and Kubernetes' symlink
//! swaps are seen) and on SIGHUP. A new handshake uses the newest files; connections already
//! open keep theirs. Files that cannot be read or do not fit keep the previous ones in force.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::Duration,
};

use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    crypto::ring::sign::any_supported_type,
    server::{
        ClientHello, ResolvesServerCert, WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
    sign::CertifiedKey,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Where a server's TLS files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain (PEM), the server's own certificate first.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to; `None`: no client
    /// certificates asked for.
    pub client_ca: Option<PathBuf>,
}

/// Why TLS files could not be used; names the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct TlsError {
    path: String,
    reason: String,
}

impl TlsError {
    fn new(path: &Path, reason: impl fmt::Display) -> Self {
        Self {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }
}

/// A TLS acceptor whose certificates follow their files.
#[derive(Clone)]
pub struct ReloadingTls {
    files: TlsFiles,
    cert: Arc<ReloadingCert>,
    clients: Option<Arc<ReloadingClientVerifier>>,
    acceptor: TlsAcceptor,
}

impl fmt::Debug for ReloadingTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ReloadingTls {
    /// Reads the files; a bad one is an error here (at start), a log line later.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert = Arc::new(ReloadingCert(RwLock::new(load_key(&files)?)));
        let clients = files
            .client_ca
            .as_deref()
            .map(|ca| {
                let verifier = load_client_verifier(ca, &provider)?;
                Ok::<_, TlsError>(Arc::new(ReloadingClientVerifier(RwLock::new(verifier))))
            })
            .transpose()?;
        let builder = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::new(&files.cert, e))?;
        let mut config = match &clients {
            Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
            None => builder.with_no_client_auth(),
        }
        .with_cert_resolver(cert.clone());
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            files,
            cert,
            clients,
        })
    }

    /// The acceptor for new connections.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Whether clients must present a certificate.
    pub fn requires_client_certificates(&self) -> bool {
        self.clients.is_some()
    }

    /// Reads the files again; on failure the certificates in force stay.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = load_key(&self.files)?;
        let verifier = match (&self.clients, &self.files.client_ca) {
            (Some(_), Some(ca)) => Some(load_client_verifier(
                ca,
                &Arc::new(rustls::crypto::ring::default_provider()),
            )?),
            _ => None,
        };
        *self.cert.0.write().unwrap_or_else(|p| p.into_inner()) = key;
        if let (Some(clients), Some(verifier)) = (&self.clients, verifier) {
            *clients.0.write().unwrap_or_else(|p| p.into_inner()) = verifier;
        }
        Ok(())
    }

    /// Reloads whenever a file changes (looked at every `every`) or on SIGHUP, until `stop`.
    pub async fn follow_files(self, every: Duration, stop: CancellationToken) {
        let paths: Vec<PathBuf> = [
            Some(&self.files.cert),
            Some(&self.files.key),
            self.files.client_ca.as_ref(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
        crate::reload::on_change(&paths, every, stop, |trigger| match self.reload() {
            Ok(()) => tracing::info!(cert = %self.files.cert.display(), trigger, "TLS certificates re-read"),
            Err(e) => tracing::error!(error = %e, trigger, "cannot re-read the TLS certificates; the previous ones stay in force"),
        })
        .await;
    }
}

/// The common name of a certificate's subject, if it has one.
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let name = parsed
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    Some(name)
}

fn load_key(files: &TlsFiles) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| TlsError::new(&files.key, format!("no private key in PEM form ({e})")))?;
    let signing = any_supported_type(&key)
        .map_err(|e| TlsError::new(&files.key, format!("unusable private key ({e})")))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| {
        TlsError::new(
            &files.key,
            format!("does not match {} ({e})", files.cert.display()),
        )
    })?;
    Ok(Arc::new(certified))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::new(path, format!("cannot read certificates ({e})")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(path, format!("not PEM certificates ({e})")))?;
    if chain.is_empty() {
        return Err(TlsError::new(path, "holds no certificate"));
    }
    Ok(chain)
}

fn load_client_verifier(
    ca: &Path,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca)? {
        roots
            .add(cert)
            .map_err(|e| TlsError::new(ca, format!("not a usable CA certificate ({e})")))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::new(ca, e))
}

/// The server certificate in force.
#[derive(Debug)]
struct ReloadingCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// The client-certificate verifier in force.
#[derive(Debug)]
struct ReloadingClientVerifier(RwLock<Arc<dyn ClientCertVerifier>>);

impl ReloadingClientVerifier {
    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ClientCertVerifier for ReloadingClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional; the verifier in force checks the chain either way.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

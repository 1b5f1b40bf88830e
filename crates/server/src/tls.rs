//! HTTPS for `baton serve`: rustls on ring (already built for `https`
//! agents), a certificate chain and its key from PEM files, HTTP/1.1 by
//! ALPN. The files are read again on SIGHUP: a renewed certificate is served
//! to new connections without a restart, and one that does not load leaves
//! the current one in place (and says why).
//!
//! With a client CA (`tls_client_ca`), clients are asked for a certificate
//! and one that the CA did not issue ends the handshake; a verified one is
//! marked on the connection's requests ([`PeerVerified`]). Instances forward
//! calls to each other with their own certificate (mTLS), and a forwarded
//! call without a verified one is refused; other clients may still come
//! without a certificate, with their token.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Where the certificate and its key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, PEM: the server's first, then intermediates.
    pub cert: PathBuf,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The certificate authorities whose client certificates are verified
    /// (PEM): instances forward to each other with their own certificate,
    /// and trust each other's through these.
    pub client_ca: Option<PathBuf>,
}

/// Marks a request that came on a connection whose client certificate the
/// client CA verified.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerVerified;

/// Why the files could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct Error {
    /// The file at fault.
    pub path: PathBuf,
    /// What is wrong with it.
    pub message: String,
}

fn error(path: &Path, message: impl Into<String>) -> Error {
    Error {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// The acceptor in force, replaced on reload.
pub(crate) struct Tls {
    files: TlsFiles,
    current: RwLock<TlsAcceptor>,
}

impl Tls {
    /// Reads the files; fails naming the file and what is wrong.
    pub(crate) fn load(files: TlsFiles) -> Result<Tls, Error> {
        let acceptor = acceptor(&files)?;
        Ok(Tls {
            files,
            current: RwLock::new(acceptor),
        })
    }

    /// The acceptor for a new connection.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the files again; on failure the current certificate stays.
    pub(crate) fn reload(&self) -> Result<(), Error> {
        let acceptor = acceptor(&self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = acceptor;
        Ok(())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| error(path, e.to_string()))
}

/// The certificates of a PEM file (at least one).
pub(crate) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(&read(path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(path, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(error(
            path,
            "no certificate in it (expected `-----BEGIN CERTIFICATE-----` blocks)",
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub(crate) fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(&read(path)?).map_err(|e| {
        error(
            path,
            format!("not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })
}

/// The certificate authorities of a PEM file, as trust anchors.
pub(crate) fn roots(path: &Path) -> Result<rustls::RootCertStore, Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(path)? {
        roots
            .add(cert)
            .map_err(|e| error(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, Error> {
    let certs = certificates(&files.cert)?;
    let key = private_key(&files.key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| error(&files.cert, e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            // Asked for, verified when given; required of forwarded calls
            // (by the middleware), not of every client.
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| error(ca, e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| error(&files.key, format!("does not match the certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// How an instance calls another: HTTPS verified against the client CA (the
/// instances' own), presenting its certificate; without TLS, no trust
/// anchors (its peers speak plain HTTP too).
#[cfg(feature = "postgres")]
pub(crate) fn client_config(files: Option<&TlsFiles>) -> Result<rustls::ClientConfig, Error> {
    let roots = match files.and_then(|f| f.client_ca.as_deref()) {
        Some(ca) => roots(ca)?,
        None => rustls::RootCertStore::empty(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| error(Path::new("(tls)"), e.to_string()))?
        .with_root_certificates(roots);
    // ALPN is the connector's (HTTP/1.1).
    match files {
        Some(f) => builder
            .with_client_auth_cert(certificates(&f.cert)?, private_key(&f.key)?)
            .map_err(|e| error(&f.key, format!("does not match the certificate: {e}"))),
        None => Ok(builder.with_no_client_auth()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test's panic is its failure report")]

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../engine/tests/fixtures/tls")
            .join(name)
    }

    #[test]
    fn bad_files_are_named_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let cases = [
            (
                dir.path().join("missing.pem"),
                fixture("server.key"),
                "missing.pem",
            ),
            (empty.clone(), fixture("server.key"), "no certificate"),
            (fixture("server.pem"), empty, "not a PEM private key"),
            // The CA's certificate with the server's key: not a pair.
            (fixture("ca.pem"), fixture("server.key"), "does not match"),
        ];
        for (cert, key, expected) in cases {
            let e = Tls::load(TlsFiles {
                cert,
                key,
                client_ca: None,
            })
            .err()
            .unwrap();
            assert!(e.to_string().contains(expected), "{e}");
        }
        let good = |client_ca| TlsFiles {
            cert: fixture("server.pem"),
            key: fixture("server.key"),
            client_ca,
        };
        let tls = Tls::load(good(None)).unwrap();
        assert!(tls.reload().is_ok());
        assert!(Tls::load(good(Some(fixture("ca.pem")))).is_ok());
        let e = Tls::load(good(Some(fixture("server.key")))).err().unwrap();
        assert!(e.to_string().contains("no certificate"), "{e}");
    }
}

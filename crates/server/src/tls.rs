//! HTTPS for `baton serve`: rustls on ring (already built for `https`
//! agents), a certificate chain and its key from PEM files, HTTP/1.1 by
//! ALPN. The files are read again on SIGHUP: a renewed certificate is served
//! to new connections without a restart, and one that does not load leaves
//! the current one in place (and says why).

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
}

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

fn acceptor(files: &TlsFiles) -> Result<TlsAcceptor, Error> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| error(path, e.to_string()));
    let cert_pem = read(&files.cert)?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(&files.cert, format!("not a PEM certificate chain: {e}")))?;
    if certs.is_empty() {
        return Err(error(
            &files.cert,
            "no certificate in it (expected `-----BEGIN CERTIFICATE-----` blocks)",
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?).map_err(|e| {
        error(
            &files.key,
            format!("not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| error(&files.cert, e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| error(&files.key, format!("does not match the certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
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
            let e = Tls::load(TlsFiles { cert, key }).err().unwrap();
            assert!(e.to_string().contains(expected), "{e}");
        }
        let tls = Tls::load(TlsFiles {
            cert: fixture("server.pem"),
            key: fixture("server.key"),
        })
        .unwrap();
        assert!(tls.reload().is_ok());
    }
}

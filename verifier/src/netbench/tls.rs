//! TLS for the bench, as KubeVirt's migration proxy uses it: TLS 1.3 with
//! mutual authentication against one CA. Credentials come from a folder in
//! the layout `migverify bench certs` (and the lab) writes:
//! `DIR/server/{ca-cert,server-cert,server-key}.pem` for `serve` and
//! `DIR/client/{ca-cert,client-cert,client-key}.pem` for `run`.
//!
//! Or made where the address is known (the checkup's pods, whose migration
//! address Multus gives only at start): `serve --tls-self-signed` makes a
//! CA and a certificate for the host's addresses and prints the CA; `run
//! --tls-ca-pem PEM` pins it. The server is then authenticated by TLS, the
//! client by the token; the encryption is the same TLS 1.3.

use std::{
    io::{self, Read, Write},
    net::{IpAddr, Shutdown, TcpStream},
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
    ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned,
};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("{path}: no certificate in it")]
    NoCertificate { path: PathBuf },
    #[error("TLS set-up with the credentials in {dir}: {message}")]
    Config { dir: PathBuf, message: String },
}

/// How the bench's two ends secure their connections, as flags.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Cleartext, as KubeVirt's `migrations.disableTLS: true`.
    #[arg(long)]
    no_tls: bool,
    /// Credentials folder as `bench certs` writes it (server/ and client/ inside).
    #[arg(long, value_name = "DIR")]
    tls_dir: Option<PathBuf>,
    /// A shared token every connection must present (both ends the same).
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// serve: make a CA and a certificate for this host's addresses now,
    /// and print the CA for clients to pin (--tls-ca-pem).
    #[arg(long, conflicts_with_all = ["no_tls", "tls_dir"])]
    tls_self_signed: bool,
    /// run: trust the server whose certificate this CA (PEM text) signed,
    /// as `serve --tls-self-signed` printed it; no client certificate.
    #[arg(
        long,
        value_name = "PEM",
        allow_hyphen_values = true,
        conflicts_with_all = ["no_tls", "tls_dir"]
    )]
    tls_ca_pem: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("TLS needs --tls-dir (write one with `migverify bench certs --dir DIR --ip SERVER_IP`), --tls-self-signed (serve) or --tls-ca-pem (run), or give --no-tls")]
    NoCredentials,
    #[error("--tls-self-signed: {0}")]
    Generate(#[from] crate::pki::PkiError),
    #[error("--token: at most {} bytes", super::protocol::MAX_TOKEN)]
    TokenTooLong,
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The marks around the CA that `serve --tls-self-signed` prints.
pub const CA_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
pub const CA_END: &str = "-----END CERTIFICATE-----";

impl Options {
    fn dir(&self) -> Result<Option<&Path>, OptionsError> {
        match (&self.tls_dir, self.no_tls) {
            (_, true) => Ok(None),
            (Some(dir), false) => Ok(Some(dir)),
            (None, false) => Err(OptionsError::NoCredentials),
        }
    }

    /// The server's TLS, `None` in cleartext. With `--tls-self-signed` the
    /// credentials are made now for `addresses`, and the CA's PEM comes
    /// back for the caller to print.
    pub fn server(
        &self,
        addresses: &[IpAddr],
    ) -> Result<(Option<Arc<ServerConfig>>, Option<String>), OptionsError> {
        if self.tls_self_signed {
            let ca = crate::pki::Authority::new("migverify bench CA")?;
            let leaf = ca.server(addresses, &[])?;
            let config = ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .and_then(|b| {
                    b.with_no_client_auth().with_single_cert(
                        pem_certificates(&leaf.cert_pem),
                        PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())
                            .map_err(|e| rustls::Error::General(e.to_string()))?,
                    )
                })
                .map_err(|e| TlsError::Config {
                    dir: PathBuf::from("(made in memory)"),
                    message: e.to_string(),
                })?;
            return Ok((Some(Arc::new(config)), Some(ca.cert_pem)));
        }
        Ok((self.dir()?.map(server_config).transpose()?, None))
    }

    /// The client's TLS, `None` in cleartext.
    pub fn client(&self) -> Result<Option<Arc<ClientConfig>>, OptionsError> {
        if let Some(pem) = &self.tls_ca_pem {
            let mut roots = RootCertStore::empty();
            for cert in pem_certificates(pem) {
                roots.add(cert).map_err(|e| TlsError::Pem {
                    path: PathBuf::from("--tls-ca-pem"),
                    message: e.to_string(),
                })?;
            }
            if roots.is_empty() {
                return Err(TlsError::NoCertificate {
                    path: PathBuf::from("--tls-ca-pem"),
                }
                .into());
            }
            let config = ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(|e| TlsError::Config {
                    dir: PathBuf::from("--tls-ca-pem"),
                    message: e.to_string(),
                })?
                .with_root_certificates(roots)
                .with_no_client_auth();
            return Ok(Some(Arc::new(config)));
        }
        Ok(self.dir()?.map(client_config).transpose()?)
    }

    pub fn token(&self) -> Result<Vec<u8>, OptionsError> {
        let token = self.token.clone().unwrap_or_default().into_bytes();
        if token.len() > super::protocol::MAX_TOKEN {
            return Err(OptionsError::TokenTooLong);
        }
        Ok(token)
    }
}

/// The certificates of a PEM text (the malformed ones left out).
fn pem_certificates(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

/// The CA a `serve --tls-self-signed` printed, from its output (a log).
pub fn printed_ca(log: &str) -> Option<String> {
    let start = log.find(CA_BEGIN)?;
    let end = log[start..].find(CA_END)? + start + CA_END.len();
    Some(format!("{}\n", &log[start..end]))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    }
    Ok(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server side: its certificate, and client certificates required.
pub fn server_config(dir: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let folder = dir.join("server");
    let config_error = |e: rustls::Error| TlsError::Config {
        dir: folder.clone(),
        message: e.to_string(),
    };
    let roots = Arc::new(roots(&folder.join("ca-cert.pem"))?);
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| TlsError::Config {
            dir: folder.clone(),
            message: e.to_string(),
        })?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            certificates(&folder.join("server-cert.pem"))?,
            private_key(&folder.join("server-key.pem"))?,
        )
        .map_err(config_error)?;
    Ok(Arc::new(config))
}

/// The runner's side: the server's certificate must name the peer's address.
pub fn client_config(dir: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let folder = dir.join("client");
    let config_error = |e: rustls::Error| TlsError::Config {
        dir: folder.clone(),
        message: e.to_string(),
    };
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(config_error)?
        .with_root_certificates(roots(&folder.join("ca-cert.pem"))?)
        .with_client_auth_cert(
            certificates(&folder.join("client-cert.pem"))?,
            private_key(&folder.join("client-key.pem"))?,
        )
        .map_err(config_error)?;
    Ok(Arc::new(config))
}

/// A bench connection, cleartext or TLS: bulk one way, then a half-close
/// so the other side can still answer with its count.
pub trait Wire: Read + Write + Send {
    /// Ends the data this side sends; reading stays open.
    fn finish_sending(&mut self) -> io::Result<()>;
}

impl Wire for TcpStream {
    fn finish_sending(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

impl Wire for StreamOwned<ClientConnection, TcpStream> {
    fn finish_sending(&mut self) -> io::Result<()> {
        // TLS 1.3 closes one direction at a time: close_notify ends ours.
        self.conn.send_close_notify();
        self.flush()?;
        self.sock.shutdown(Shutdown::Write)
    }
}

impl Wire for StreamOwned<ServerConnection, TcpStream> {
    fn finish_sending(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush()?;
        self.sock.shutdown(Shutdown::Write)
    }
}

/// Wraps a connected socket as the runner's end, TLS or not.
pub fn client_wire(
    socket: TcpStream,
    tls: Option<&Arc<ClientConfig>>,
    peer: IpAddr,
) -> io::Result<Box<dyn Wire>> {
    let Some(config) = tls else {
        return Ok(Box::new(socket));
    };
    let connection = ClientConnection::new(config.clone(), ServerName::IpAddress(peer.into()))
        .map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(connection, socket);
    // Handshake now, so a refused certificate shows here, not mid-data.
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(Box::new(stream))
}

/// Wraps an accepted socket as the server's end, TLS or not.
pub fn server_wire(
    socket: TcpStream,
    tls: Option<&Arc<ServerConfig>>,
) -> io::Result<Box<dyn Wire>> {
    let Some(config) = tls else {
        return Ok(Box::new(socket));
    };
    let connection = ServerConnection::new(config.clone()).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(connection, socket);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(Box::new(stream))
}

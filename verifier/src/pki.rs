//! x509 credentials made in-process (rcgen, ring), where the addresses
//! they must name are known: the lab's QEMU migration TLS, `bench certs`,
//! the checkup's bench pods, and the agent's metrics endpoint when no
//! serving-cert secret is mounted. No `openssl` command: the image is
//! `FROM scratch`.
//!
//! Keys are ECDSA P-256, as the lab made them with openssl before.

use std::{fs, net::IpAddr, path::Path, time::Duration};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("making a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// How long made certificates are valid: runs last minutes, agents months.
const VALIDITY: Duration = Duration::from_secs(398 * 24 * 3600);

/// A certificate and its private key, PEM.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A throw-away certificate authority for one set of credentials.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
}

/// Valid from an hour ago (clocks differ) for [`VALIDITY`].
fn params(common_name: &str) -> CertificateParams {
    let now = time::OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + VALIDITY;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
}

impl Authority {
    pub fn new(common_name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = params(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        Ok(Authority {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A server certificate naming `ips` and `dns_names` (what clients
    /// dial and check).
    pub fn server(&self, ips: &[IpAddr], dns_names: &[String]) -> Result<Credentials, PkiError> {
        self.leaf(
            "migverify server",
            ips,
            dns_names,
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate (mutual TLS).
    pub fn client(&self, common_name: &str) -> Result<Credentials, PkiError> {
        self.leaf(common_name, &[], &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(
        &self,
        common_name: &str,
        ips: &[IpAddr],
        dns_names: &[String],
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<Credentials, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = params(common_name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        params.subject_alt_names = ips
            .iter()
            .map(|ip| SanType::IpAddress(*ip))
            .chain(
                dns_names
                    .iter()
                    .filter_map(|name| name.clone().try_into().ok().map(SanType::DnsName)),
            )
            .collect();
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Credentials {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn write(path: &Path, text: &str) -> Result<(), PkiError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|source| PkiError::Write {
            path: parent.display().to_string(),
            source,
        })?;
    }
    fs::write(path, text).map_err(|source| PkiError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// Writes mutual-TLS credentials in the layout QEMU's `tls-creds-x509` and
/// `bench serve|run --tls-dir` read: `dir/server/{ca-cert,server-cert,
/// server-key}.pem` (the certificate naming `server_ips`, as QEMU checks
/// against the URI) and `dir/client/{ca-cert,client-cert,client-key}.pem`,
/// one fresh CA for both.
pub fn write_mutual(dir: &Path, server_ips: &[IpAddr]) -> Result<(), PkiError> {
    let ca = Authority::new("migverify CA")?;
    let server = ca.server(server_ips, &[])?;
    let client = ca.client("migverify client")?;
    for (role, credentials) in [("server", &server), ("client", &client)] {
        let folder = dir.join(role);
        write(&folder.join("ca-cert.pem"), &ca.cert_pem)?;
        write(
            &folder.join(format!("{role}-cert.pem")),
            &credentials.cert_pem,
        )?;
        write(
            &folder.join(format!("{role}-key.pem")),
            &credentials.key_pem,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutual_credentials_make_a_tls13_session() {
        let dir = std::env::temp_dir().join(format!("migverify-pki-{}", std::process::id()));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        write_mutual(&dir, &[ip]).unwrap();
        // rustls accepts them both ways: the server checks the client's
        // certificate, the client the server's name (its IP).
        let server = crate::netbench::tls::server_config(&dir).unwrap();
        let client = crate::netbench::tls::client_config(&dir).unwrap();
        let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = std::thread::spawn(move || {
            let (socket, _) = listener.accept().unwrap();
            let mut wire = crate::netbench::tls::server_wire(socket, Some(&server)).unwrap();
            let mut text = [0u8; 5];
            std::io::Read::read_exact(&mut wire, &mut text).unwrap();
            text
        });
        let socket = std::net::TcpStream::connect(addr).unwrap();
        let mut wire = crate::netbench::tls::client_wire(socket, Some(&client), ip).unwrap();
        std::io::Write::write_all(&mut wire, b"hello").unwrap();
        std::io::Write::flush(&mut wire).unwrap();
        assert_eq!(&accept.join().unwrap(), b"hello");
        let _ = fs::remove_dir_all(&dir);
    }
}

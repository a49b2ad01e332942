//! x509 credentials for migration TLS, made with openssl: a CA, a server
//! certificate for the target (its migration and pod addresses as IP SANs,
//! which QEMU checks against the URI) and a client certificate for the
//! source. Mutual TLS, as KubeVirt's migration proxy uses: `bench certs`
//! writes them for `bench serve|run`, the lab for its QEMUs.

use std::{fs, net::IpAddr, path::Path, process::Command};

/// What went wrong making the credentials.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PkiError(String);

fn write(path: &Path, text: &str) -> Result<(), PkiError> {
    fs::write(path, text).map_err(|e| PkiError(format!("writing {}: {e}", path.display())))
}

/// Runs openssl with `args`; a failure says which command and why.
fn run(args: &[&str]) -> Result<(), PkiError> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| {
            PkiError(if e.kind() == std::io::ErrorKind::NotFound {
                "openssl is not installed (cargo xtask setup installs it)".into()
            } else {
                format!("`{}`: {e}", args.join(" "))
            })
        })?;
    if !out.status.success() {
        return Err(PkiError(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Creates `dir/server` and `dir/client` in the layout QEMU's
/// `tls-creds-x509` expects (ca-cert.pem, server-*.pem, client-*.pem).
pub fn create(dir: &Path, server_ips: &[IpAddr]) -> Result<(), PkiError> {
    let server = dir.join("server");
    let client = dir.join("client");
    for d in [&server, &client] {
        fs::create_dir_all(d).map_err(|e| PkiError(format!("creating {}: {e}", d.display())))?;
    }
    let path = |p: &Path| p.to_str().expect("lab paths are UTF-8").to_string();
    let ca_key = dir.join("ca-key.pem");
    let ca_cert = dir.join("ca-cert.pem");
    let ca_ext = dir.join("ca.cnf");
    write(
        &ca_ext,
        "[req]\ndistinguished_name=dn\nx509_extensions=ext\nprompt=no\n[dn]\nCN=mvlab CA\n\
         [ext]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier=hash\n",
    )?;
    run(&[
        "openssl",
        "req",
        "-x509",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "30",
        "-config",
        &path(&ca_ext),
        "-keyout",
        &path(&ca_key),
        "-out",
        &path(&ca_cert),
    ])?;

    let sans: Vec<String> = server_ips.iter().map(|ip| format!("IP:{ip}")).collect();
    for (role, folder, usage, san) in [
        ("server", &server, "serverAuth", Some(sans.join(","))),
        ("client", &client, "clientAuth", None),
    ] {
        let key = folder.join(format!("{role}-key.pem"));
        let cert = folder.join(format!("{role}-cert.pem"));
        let csr = dir.join(format!("{role}.csr"));
        let ext = dir.join(format!("{role}.ext"));
        let mut extensions = format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage={usage}\n"
        );
        if let Some(san) = san {
            extensions.push_str(&format!("subjectAltName={san}\n"));
        }
        write(&ext, &extensions)?;
        run(&[
            "openssl",
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN=mvlab-{role}"),
            "-keyout",
            &path(&key),
            "-out",
            &path(&csr),
        ])?;
        run(&[
            "openssl",
            "x509",
            "-req",
            "-in",
            &path(&csr),
            "-CA",
            &path(&ca_cert),
            "-CAkey",
            &path(&ca_key),
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            &path(&ext),
            "-out",
            &path(&cert),
        ])?;
        fs::copy(&ca_cert, folder.join("ca-cert.pem"))
            .map_err(|e| PkiError(format!("copying the CA certificate: {e}")))?;
    }
    Ok(())
}

//! The agent's metrics endpoint refuses who the Kubernetes API does not
//! vouch for: over TLS, each caller's bearer token goes to a TokenReview
//! and the user to a SubjectAccessReview for `get /metrics`, answered by
//! the replay API server. No token or an unknown one: 401; a known user
//! without the grant: 403; a granted one: the page. `/healthz` (the probes)
//! stays open. Unprivileged.

mod support;

use std::{net::IpAddr, sync::Arc};

use rustls::pki_types::{pem::PemObject as _, CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use verifier::{
    metrics::{
        self,
        auth::{AuthOptions, Guard},
        Access, Exposition,
    },
    pki::Authority,
};

use support::apiserver::ApiServer;

/// One request over TLS, trusting `ca`; the status line and body.
async fn get(addr: std::net::SocketAddr, ca: &str, path: &str, token: Option<&str>) -> String {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::IpAddress(addr.ip().into());
    let mut stream = connector
        .connect(name, socket)
        .await
        .expect("TLS handshake");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: agent\r\n{auth}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    answer
}

#[test]
fn metrics_need_a_token_the_api_authorizes_for_get_metrics() {
    let server = ApiServer::start();
    server.add_token(
        "prometheus-token",
        "system:serviceaccount:openshift-monitoring:prometheus-k8s",
    );
    server.add_token("someone-token", "system:serviceaccount:default:someone");
    server.grant(
        "system:serviceaccount:openshift-monitoring:prometheus-k8s",
        "get",
        "/metrics",
    );
    let dir = std::env::temp_dir().join(format!("migverify-metrics-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A serving-cert Secret as mounted: tls.crt and tls.key.
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let ca = Authority::new("test service CA").unwrap();
    let leaf = ca.server(&[ip], &[]).unwrap();
    std::fs::write(dir.join("tls.crt"), &leaf.cert_pem).unwrap();
    std::fs::write(dir.join("tls.key"), &leaf.key_pem).unwrap();
    let kubeconfig = server.kubeconfig(&dir);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = verifier::cluster::connect(Some(&kubeconfig)).await.unwrap();
        let options = AuthOptions {
            metrics_auth: true,
            metrics_tls_dir: Some(dir.clone()),
        };
        let access = Access::Guarded {
            tls: tokio_rustls::TlsAcceptor::from(options.tls(&[ip]).unwrap()),
            guard: Guard::new(client),
        };
        let listener = metrics::bind("0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let page = Exposition::default();
        page.set("migverify_build_info{version=\"0.1.0\"} 1\n".into());
        tokio::spawn(metrics::serve(listener, page, access));

        let anonymous = get(addr, &ca.cert_pem, "/metrics", None).await;
        assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");
        assert!(
            anonymous.contains("WWW-Authenticate: Bearer"),
            "{anonymous}"
        );
        let unknown = get(addr, &ca.cert_pem, "/metrics", Some("made-up")).await;
        assert!(unknown.starts_with("HTTP/1.1 401"), "{unknown}");
        assert!(unknown.contains("invalid bearer token"), "{unknown}");
        let someone = get(addr, &ca.cert_pem, "/metrics", Some("someone-token")).await;
        assert!(someone.starts_with("HTTP/1.1 403"), "{someone}");
        assert!(someone.contains("may not get /metrics"), "{someone}");
        let prometheus = get(addr, &ca.cert_pem, "/metrics", Some("prometheus-token")).await;
        assert!(prometheus.starts_with("HTTP/1.1 200"), "{prometheus}");
        assert!(prometheus.ends_with("migverify_build_info{version=\"0.1.0\"} 1\n"));
        // Scraped again: the answer is remembered, the API not asked again.
        let reviews = |server: &ApiServer| server.writes().len();
        let before = reviews(&server);
        let again = get(addr, &ca.cert_pem, "/metrics", Some("prometheus-token")).await;
        assert!(again.starts_with("HTTP/1.1 200"), "{again}");
        assert_eq!(reviews(&server), before, "cached");
        let health = get(addr, &ca.cert_pem, "/healthz", None).await;
        assert!(
            health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"),
            "{health}"
        );
    });
    // What the API was asked: who each token is, then whether that user may
    // get /metrics (a non-resource URL).
    let writes = server.writes();
    let token_reviews: Vec<_> = writes
        .iter()
        .filter(|w| w.path == "/apis/authentication.k8s.io/v1/tokenreviews")
        .collect();
    assert_eq!(token_reviews.len(), 3, "{writes:#?}");
    let access_reviews: Vec<_> = writes
        .iter()
        .filter(|w| w.path == "/apis/authorization.k8s.io/v1/subjectaccessreviews")
        .collect();
    assert_eq!(access_reviews.len(), 2, "{writes:#?}");
    for review in access_reviews {
        assert_eq!(
            review.body["spec"]["nonResourceAttributes"],
            serde_json::json!({ "path": "/metrics", "verb": "get" })
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_a_secret_the_endpoint_makes_its_own_certificate() {
    let options = AuthOptions {
        metrics_auth: true,
        metrics_tls_dir: Some("/nonexistent/serving-cert".into()),
    };
    assert!(options.tls(&["10.128.0.5".parse().unwrap()]).is_ok());
}

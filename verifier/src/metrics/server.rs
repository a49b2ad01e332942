//! A minimal HTTP/1.1 server for the exposition page: `GET /metrics`
//! answers the latest page, one request per connection, `GET /healthz`
//! says the process serves. Enough for Prometheus, probes and curl; no
//! framework for two routes. Open (`watch`, `verify`), or TLS with every
//! caller authorized by the Kubernetes API (the agent, [`super::auth`]).

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _},
    net::TcpListener,
};

use super::auth::{Decision, Guard};

/// The longest request head read; anything longer is refused.
const MAX_REQUEST: usize = 8192;
/// A client that sends no complete request head in this time is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Where `--metrics-listen` binds: `ADDR:PORT`, or a bare `PORT` on the
/// loopback, so metrics are never exposed beyond the host by accident.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(port) = s.parse::<u16>() {
            return Ok(ListenAddr(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                port,
            )));
        }
        s.parse::<SocketAddr>().map(ListenAddr).map_err(|_| {
            format!("{s:?} is neither PORT nor ADDR:PORT (e.g. 9464, 0.0.0.0:9464, [::1]:9464)")
        })
    }
}

/// The page the server answers, replaced whole as the measurements move.
#[derive(Clone, Default)]
pub struct Exposition(Arc<Mutex<String>>);

impl Exposition {
    pub fn set(&self, page: String) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = page;
    }

    fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("--metrics-listen {addr}: cannot listen: {source}")]
pub struct BindError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// Binds now (so a taken port is a usage error before anything is
/// attached); serving starts inside the runtime.
pub fn bind(addr: ListenAddr) -> Result<std::net::TcpListener, BindError> {
    let bind_error = |source| BindError {
        addr: addr.0,
        source,
    };
    let listener = std::net::TcpListener::bind(addr.0).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    Ok(listener)
}

/// Who may read the page.
#[derive(Clone)]
pub enum Access {
    /// Anyone who reaches the address (bind it to the loopback).
    Open,
    /// TLS, and a bearer token the API allows `get` on `/metrics`.
    Guarded {
        tls: tokio_rustls::TlsAcceptor,
        guard: Guard,
    },
}

/// Serves `page` until the runtime ends. Errors of one client never stop
/// the server.
pub async fn serve(listener: std::net::TcpListener, page: Exposition, access: Access) {
    let listener = match TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("migverify: metrics server: {error}");
            return;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: try again shortly.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (page, access) = (page.clone(), access.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(READ_TIMEOUT, async {
                match access {
                    Access::Open => answer(stream, &page, None).await,
                    Access::Guarded { tls, guard } => {
                        let stream = tls.accept(stream).await?;
                        answer(stream, &page, Some(&guard)).await
                    }
                }
            })
            .await;
        });
    }
}

/// The bearer token of a request head, if it has one.
fn bearer(head: &str) -> Option<&str> {
    head.lines().skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("authorization")
            .then(|| value.trim())?
            .strip_prefix("Bearer ")
            .map(str::trim)
    })
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    page: &Exposition,
    guard: Option<&Guard>,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buffer[..n]);
        if head.len() > MAX_REQUEST {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "",
                false,
            )
            .await;
        }
    }
    let head = String::from_utf8_lossy(&head);
    let line = head.lines().next().unwrap_or_default();
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let decision = match guard {
                None => Decision::Allowed,
                Some(guard) => guard.decide(bearer(&head)).await,
            };
            match decision {
                Decision::Allowed => respond(&mut stream, "200 OK", &page.get(), head_only).await,
                Decision::Unauthenticated(why) => {
                    let body = format!("unauthorized: {why}\n");
                    respond(&mut stream, "401 Unauthorized", &body, false).await
                }
                Decision::Forbidden(why) => {
                    let body = format!("forbidden: {why}\n");
                    respond(&mut stream, "403 Forbidden", &body, false).await
                }
            }
        }
        ("GET" | "HEAD", "/healthz") => respond(&mut stream, "200 OK", "ok\n", head_only).await,
        ("GET" | "HEAD", "/") => {
            let body = "migverify: metrics at /metrics\n";
            respond(&mut stream, "200 OK", body, head_only).await
        }
        ("GET" | "HEAD", _) => respond(&mut stream, "404 Not Found", "not found\n", false).await,
        _ => respond(&mut stream, "405 Method Not Allowed", "GET only\n", false).await,
    }
}

async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    // A refused caller is told how to authenticate (RFC 6750).
    let challenge = if status.starts_with("401") {
        "WWW-Authenticate: Bearer realm=\"migverify\"\r\n"
    } else {
        ""
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         {challenge}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes()).await?;
    if !head_only {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpStream;

    use super::*;

    #[test]
    fn the_bearer_token_is_read_from_the_authorization_header() {
        let head = "GET /metrics HTTP/1.1\r\nHost: x\r\nauthorization:  Bearer abc.def \r\n\r\n";
        assert_eq!(bearer(head), Some("abc.def"));
        assert_eq!(bearer("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), None);
        assert_eq!(
            bearer("GET / HTTP/1.1\r\nAuthorization: Basic eA==\r\n\r\n"),
            None
        );
    }

    #[test]
    fn a_bare_port_listens_on_the_loopback() {
        assert_eq!(
            "9464".parse::<ListenAddr>().unwrap().0,
            "127.0.0.1:9464".parse().unwrap()
        );
        assert_eq!(
            "[::]:9464".parse::<ListenAddr>().unwrap().0,
            "[::]:9464".parse().unwrap()
        );
        assert!("localhost"
            .parse::<ListenAddr>()
            .unwrap_err()
            .contains("PORT"));
    }

    #[test]
    fn serves_the_page_and_refuses_the_rest() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let listener = bind("0".parse().unwrap()).unwrap();
            let addr = listener.local_addr().unwrap();
            let page = Exposition::default();
            page.set("up 1\n".into());
            tokio::spawn(serve(listener, page, Access::Open));
            let ask = |request: &'static str| async move {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                stream.write_all(request.as_bytes()).await.unwrap();
                let mut answer = String::new();
                stream.read_to_string(&mut answer).await.unwrap();
                answer
            };
            let ok = ask("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
            assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
            assert!(
                ok.contains("version=0.0.4") && ok.ends_with("\r\n\r\nup 1\n"),
                "{ok}"
            );
            let missing = ask("GET /nope HTTP/1.1\r\n\r\n").await;
            assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
            let post = ask("POST /metrics HTTP/1.1\r\n\r\n").await;
            assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        });
    }
}

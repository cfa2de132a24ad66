//! TLS on the listener (`[tls]`): pushes over TLS 1.3 with HTTP/2 and
//! HTTP/1.1 (ALPN), plain HTTP refused, a bad certificate refuses the start
//! naming its file, a replaced certificate serves new handshakes while an
//! open connection goes on, and client certificates when `client_ca_file`
//! is set.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use inlet_host::config::TlsConfig;
use inlet_host::{ServeOptions, Server};
use inlet_tests::{TestHost, eventually, plugins};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A CA and what it signs.
struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        Ca {
            cert: params.self_signed(&key).unwrap(),
            key,
        }
    }

    /// A leaf for `localhost` and 127.0.0.1 (or a client), valid now
    /// unless `expired`: (certificate PEM, key PEM, certificate DER).
    fn leaf(&self, expired: bool) -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }
}

fn write_pair(dir: &Path, name: &str, (cert, key, _): &(String, String, Vec<u8>)) -> TlsConfig {
    let cert_file = dir.join(format!("{name}.crt"));
    let key_file = dir.join(format!("{name}.key"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    TlsConfig {
        cert_file,
        key_file,
        client_ca_file: None,
    }
}

/// A TLS client trusting `ca`, offering `alpn`, with a client certificate
/// when given.
fn client(
    ca: &Ca,
    alpn: &[&[u8]],
    identity: Option<&(String, String, Vec<u8>)>,
) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key, _)) => {
            use rustls::pki_types::pem::PemObject as _;
            let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

type Stream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn connect(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
) -> std::io::Result<Stream> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

fn push_request(body: &str) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method("POST")
        .uri("https://localhost/ingest/hooks")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// The ids of the source's events, read over TLS (the listener speaks
/// nothing else).
async fn event_ids(connector: &tokio_rustls::TlsConnector, addr: SocketAddr) -> Vec<String> {
    let stream = connect(connector, addr).await.unwrap();
    let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("https://localhost/v1/streams/hooks/events")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = s.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["id"].as_str().unwrap_or("").to_string()
        })
        .collect()
}

/// One push over HTTP/2 on `stream`.
async fn h2_push(stream: Stream, body: &str) -> http::Response<hyper::body::Incoming> {
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    h2.send_request(push_request(body)).await.unwrap()
}

async fn start(tls: TlsConfig) -> TestHost {
    TestHost::start_with(&[("hooks", plugins::WEBHOOK_JSON, None)], |c| {
        c.tls = Some(tls)
    })
    .await
}

fn addr(host: &TestHost) -> SocketAddr {
    host.base.trim_start_matches("http://").parse().unwrap()
}

#[tokio::test]
async fn pushes_over_tls_13_with_http2_and_http1_and_plain_http_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test ca");
    let host = start(write_pair(dir.path(), "server", &ca.leaf(false))).await;
    let addr = addr(&host);

    // HTTP/2 by ALPN, TLS 1.3.
    let stream = connect(&client(&ca, &[b"h2", b"http/1.1"], None), addr)
        .await
        .unwrap();
    let (_, session) = stream.get_ref();
    assert_eq!(
        session.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(session.alpn_protocol(), Some(&b"h2"[..]));
    let resp = h2_push(stream, r#"{"id":"h2"}"#).await;
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 202);

    // HTTP/1.1 by ALPN.
    let stream = connect(&client(&ca, &[b"http/1.1"], None), addr)
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut h1, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = h1
        .send_request(push_request(r#"{"id":"h1"}"#))
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("accepted"));

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::new()
        .post(format!("http://{addr}/ingest/hooks"))
        .body(r#"{"id":"plain"}"#)
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");

    // A client that does not trust the certificate fails its handshake.
    let stranger = Ca::new("another ca");
    assert!(
        connect(&client(&stranger, &[b"h2"], None), addr)
            .await
            .is_err()
    );

    // Only the two TLS pushes were stored.
    let ids = event_ids(&client(&ca, &[b"http/1.1"], None), addr).await;
    assert_eq!(ids, ["h2", "h1"]);
}

#[tokio::test]
async fn a_bad_certificate_refuses_the_start_naming_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test ca");
    let good = write_pair(dir.path(), "good", &ca.leaf(false));
    let expired = write_pair(dir.path(), "expired", &ca.leaf(true));
    let other = write_pair(dir.path(), "other", &ca.leaf(false));
    let mismatched = TlsConfig {
        key_file: other.key_file.clone(),
        ..good.clone()
    };
    let missing = TlsConfig {
        cert_file: dir.path().join("nope.crt"),
        ..good.clone()
    };
    let swapped = TlsConfig {
        cert_file: good.key_file.clone(),
        key_file: good.cert_file.clone(),
        client_ca_file: None,
    };
    for (tls, path, says) in [
        (&expired, &expired.cert_file, "expired"),
        (&mismatched, &mismatched.key_file, "not the key"),
        (&missing, &missing.cert_file, "cannot read"),
        (&swapped, &swapped.cert_file, "no certificate"),
    ] {
        let config = inlet_host::HostConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            plugins_dir: dir.path().join("plugins.d"),
            data_dir: dir.path().join(format!("data-{says}")),
            tls: Some(tls.clone()),
            ..Default::default()
        };
        let err = match Server::start(config, ServeOptions::default()).await {
            Ok(_) => panic!("{says}: the host started"),
            Err(err) => format!("{err:#}"),
        };
        assert!(
            err.contains(&path.display().to_string()) && err.contains(says),
            "{says}: {err}"
        );
    }
}

#[tokio::test]
async fn a_replaced_certificate_serves_new_handshakes_while_open_connections_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("test ca");
    let first = ca.leaf(false);
    let tls = write_pair(dir.path(), "server", &first);
    let host = start(tls.clone()).await;
    let addr = addr(&host);
    let connector = client(&ca, &[b"http/1.1"], None);
    let peer_cert = |s: &Stream| s.get_ref().1.peer_certificates().unwrap()[0].to_vec();

    let stream = connect(&connector, addr).await.unwrap();
    assert_eq!(peer_cert(&stream), first.2);
    let (mut open, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    assert_eq!(
        open.send_request(push_request(r#"{"id":"a"}"#))
            .await
            .unwrap()
            .status(),
        202
    );

    // Replace the files (new names renamed into place, key first).
    let second = ca.leaf(false);
    std::fs::write(dir.path().join("new.key"), &second.1).unwrap();
    std::fs::rename(dir.path().join("new.key"), &tls.key_file).unwrap();
    std::fs::write(dir.path().join("new.crt"), &second.0).unwrap();
    std::fs::rename(dir.path().join("new.crt"), &tls.cert_file).unwrap();
    eventually(
        Duration::from_secs(30),
        "new handshakes get the new certificate",
        || async {
            let stream = connect(&connector, addr).await.ok()?;
            (peer_cert(&stream) == second.2).then_some(())
        },
    )
    .await;
    // The connection opened before goes on.
    assert_eq!(
        open.send_request(push_request(r#"{"id":"b"}"#))
            .await
            .unwrap()
            .status(),
        202
    );
    assert_eq!(event_ids(&connector, addr).await, ["a", "b"]);
}

#[tokio::test]
async fn client_certificates_are_required_when_a_client_ca_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("server ca");
    let clients = Ca::new("client ca");
    let mut tls = write_pair(dir.path(), "server", &ca.leaf(false));
    let client_ca = dir.path().join("clients.crt");
    std::fs::write(&client_ca, clients.cert.pem()).unwrap();
    tls.client_ca_file = Some(client_ca);
    let host = start(tls).await;
    let addr = addr(&host);

    // Without a certificate, or with one from another CA: refused.
    for identity in [None, Some(Ca::new("stranger").leaf(false))] {
        let refused = async {
            let stream = connect(&client(&ca, &[b"http/1.1"], identity.as_ref()), addr).await?;
            let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            s.send_request(push_request(r#"{"id":"x"}"#))
                .await
                .map_err(std::io::Error::other)
        }
        .await;
        assert!(refused.is_err(), "{:?}", refused.map(|r| r.status()));
    }
    // With a certificate from the client CA: served.
    let me = clients.leaf(false);
    let stream = connect(&client(&ca, &[b"h2"], Some(&me)), addr)
        .await
        .unwrap();
    let resp = h2_push(stream, r#"{"id":"ok"}"#).await;
    assert_eq!(resp.status(), 202);
    assert_eq!(
        event_ids(&client(&ca, &[b"http/1.1"], Some(&me)), addr).await,
        ["ok"]
    );
}

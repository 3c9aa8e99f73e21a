//! Mutual TLS to a partner, end to end: a tiny HTTPS server that requires a
//! client certificate from its own CA, and the adapters' HTTP client built
//! from a provider's `tls` settings. Every certificate is made here.

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use std::sync::Arc;
use std::time::Duration;
use switchyard_adapters::http::{self, Transport};
use switchyard_adapters::secret::SecretSource;
use switchyard_adapters::tls::{MinTlsVersion, TlsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, server::WebPkiClientVerifier, RootCertStore, ServerConfig};

type Ca = CertifiedIssuer<'static, KeyPair>;
type Accept = Arc<dyn Fn(&CertificateDer<'_>) -> bool + Send + Sync>;

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca")
}

/// A certificate signed by `ca`: (certificate PEM, key PEM).
fn leaf(ca: &Ca, name: &str, usage: ExtendedKeyUsagePurpose) -> (String, String) {
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, ca).expect("signed");
    (cert.pem(), key.serialize_pem())
}

struct Pki {
    server_ca: Ca,
    client_ca: Ca,
}

impl Pki {
    fn new() -> Self {
        Self { server_ca: ca("vendor server CA"), client_ca: ca("vendor client CA") }
    }

    /// The vendor: requires a client certificate from `client_ca` and
    /// presents `server_cert`. Answers `200 ok` to any request once.
    async fn serve(&self, server: (String, String), versions: &[&'static rustls::SupportedProtocolVersion]) -> u16 {
        self.serve_body(server, versions, "ok").await
    }

    /// [`Self::serve`], answering `body` to any request.
    async fn serve_body(&self, server: (String, String), versions: &[&'static rustls::SupportedProtocolVersion], body: &'static str) -> u16 {
        self.serve_if(server, versions, body, Arc::new(|_: &CertificateDer<'_>| true)).await
    }

    /// [`Self::serve_body`] for the client certificates `accept` takes (a
    /// vendor that has revoked the others): other connections are closed.
    async fn serve_if(&self, server: (String, String), versions: &[&'static rustls::SupportedProtocolVersion], body: &'static str, accept: Accept) -> u16 {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(self.client_ca.der().clone()).expect("client ca");
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build().expect("verifier");
        let chain = CertificateDer::pem_slice_iter(server.0.as_bytes()).collect::<Result<Vec<_>, _>>().expect("server chain");
        let key = PrivateKeyDer::from_pem_slice(server.1.as_bytes()).expect("server key");
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, accept) = (acceptor.clone(), accept.clone());
                tokio::spawn(async move {
                    // A refused handshake just ends the connection, as at a vendor.
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    if !tls.get_ref().1.peer_certificates().and_then(|c| c.first()).is_some_and(|c| accept(c)) {
                        return;
                    }
                    let mut buf = vec![0u8; 4096];
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let reply = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len());
                    let _ = tls.write_all(reply.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        port
    }
}

fn tls(client: Option<&(String, String)>, ca: &Ca) -> TlsConfig {
    TlsConfig {
        client_cert: client.map(|c| SecretSource::inline(&c.0)),
        client_key: client.map(|c| SecretSource::inline(&c.1)),
        ca_bundle: Some(SecretSource::inline(&ca.pem())),
        ..TlsConfig::default()
    }
}

async fn call(config: &TlsConfig, port: u16) -> Result<String, String> {
    let loaded = config.load("providers[vendor].tls").map_err(|e| e.to_string())?;
    let client = http::client(Transport::new(Duration::from_secs(5), 2).with_tls(Some(loaded))).map_err(|e| e.to_string())?;
    let reply = client.get(format!("https://127.0.0.1:{port}/v1/ping")).send().await.map_err(|e| format!("{e:?}"))?;
    reply.text().await.map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn a_vendor_that_requires_a_client_certificate_is_reached_only_with_it() {
    let pki = Pki::new();
    let server = leaf(&pki.server_ca, "api.vendor.test", ExtendedKeyUsagePurpose::ServerAuth);
    let client = leaf(&pki.client_ca, "switchyard", ExtendedKeyUsagePurpose::ClientAuth);
    let port = pki.serve(server, rustls::ALL_VERSIONS).await;

    assert_eq!(call(&tls(Some(&client), &pki.server_ca), port).await.expect("mutual TLS succeeds"), "ok");

    let err = call(&tls(None, &pki.server_ca), port).await.expect_err("no client certificate, no answer");
    assert!(!err.contains("BEGIN"), "{err}");

    // A client certificate from a CA the vendor does not know is refused too.
    let stranger = leaf(&ca("someone else"), "switchyard", ExtendedKeyUsagePurpose::ClientAuth);
    call(&tls(Some(&stranger), &pki.server_ca), port).await.expect_err("unknown client CA");
}

#[tokio::test]
async fn a_server_certificate_from_another_ca_is_refused() {
    let pki = Pki::new();
    let impostor_ca = ca("impostor");
    let server = leaf(&impostor_ca, "api.vendor.test", ExtendedKeyUsagePurpose::ServerAuth);
    let client = leaf(&pki.client_ca, "switchyard", ExtendedKeyUsagePurpose::ClientAuth);
    let port = pki.serve(server, rustls::ALL_VERSIONS).await;
    let err = call(&tls(Some(&client), &pki.server_ca), port).await.expect_err("pinned CA");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
}

#[tokio::test]
async fn the_minimum_tls_version_is_enforced() {
    let pki = Pki::new();
    let server = leaf(&pki.server_ca, "api.vendor.test", ExtendedKeyUsagePurpose::ServerAuth);
    let client = leaf(&pki.client_ca, "switchyard", ExtendedKeyUsagePurpose::ClientAuth);
    let port = pki.serve(server, &[&rustls::version::TLS12]).await;
    let mut config = tls(Some(&client), &pki.server_ca);
    assert_eq!(call(&config, port).await.expect("1.2 allowed by default"), "ok");
    config.min_version = Some(MinTlsVersion::Tls13);
    call(&config, port).await.expect_err("a 1.2-only vendor is refused when 1.3 is the floor");
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused_naming_the_field_not_the_key() {
    let pki = Pki::new();
    let client = leaf(&pki.client_ca, "switchyard", ExtendedKeyUsagePurpose::ClientAuth);
    let other = leaf(&pki.client_ca, "switchyard", ExtendedKeyUsagePurpose::ClientAuth);
    let config = tls(Some(&(client.0, other.1.clone())), &pki.server_ca);
    let err = config.load("providers[adyen].tls").expect_err("mismatched key").to_string();
    assert!(err.contains("providers[adyen].tls.client_key") && err.contains("client_cert"), "{err}");
    assert!(!err.contains(other.1.lines().nth(1).expect("key body")), "{err}");

    let broken = TlsConfig { client_key: Some(SecretSource::inline("-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----")), ..config };
    let err = broken.load("providers[adyen].tls").expect_err("not a key").to_string();
    assert_eq!(err, "providers[adyen].tls.client_key: no PEM private key in it");

    let missing = TlsConfig { ca_bundle: Some(SecretSource { file: Some("/nonexistent/ca.pem".into()), ..SecretSource::default() }), ..TlsConfig::default() };
    let err = missing.load("providers[adyen].tls").expect_err("no file").to_string();
    assert!(err.starts_with("providers[adyen].tls.ca_bundle: cannot read /nonexistent/ca.pem"), "{err}");
}

#[test]
fn an_expired_client_certificate_stops_start_up_with_its_date() {
    let pki = Pki::new();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params");
    params.distinguished_name.push(DnType::CommonName, "switchyard");
    params.not_before = rcgen::date_time_ymd(2019, 1, 1);
    params.not_after = rcgen::date_time_ymd(2020, 1, 1);
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &pki.client_ca).expect("signed");
    let config = tls(Some(&(cert.pem(), key.serialize_pem())), &pki.server_ca);
    let err = config.load("providers[stripe].tls").expect_err("expired").to_string();
    assert_eq!(err, "providers[stripe].tls.client_cert: certificate CN=switchyard expired at 2020-01-01T00:00:00Z");

    // The inventory lists it all the same (that is where it is found).
    let items = config.inventory("stripe").expect("inventory");
    let kinds: Vec<_> = items.iter().map(|i| (i.kind.as_str(), i.subject.as_str())).collect();
    assert_eq!(kinds, [("client_cert", "CN=switchyard"), ("ca_bundle", "CN=vendor server CA")]);
}

/// The card processors' clients over mutual TLS (`providers[].tls` of the
/// card worker): Lithic and Marqeta reach a vendor that requires a client
/// certificate with it, and nothing without it.
#[tokio::test]
async fn the_card_processors_reach_a_vendor_that_requires_a_client_certificate_only_with_it() {
    use switchyard_adapters::cards::lithic::LithicAdapter;
    use switchyard_adapters::cards::marqeta::MarqetaAdapter;
    use switchyard_adapters::cards::{CardCall, CardRef};
    use switchyard_adapters::{CallContext, Secret};
    let pki = Pki::new();
    let server = leaf(&pki.server_ca, "api.vendor.test", ExtendedKeyUsagePurpose::ServerAuth);
    let client = leaf(&pki.client_ca, "switchyard", ExtendedKeyUsagePurpose::ClientAuth);
    // Both a Lithic card list and a Marqeta card, whichever asks.
    let port = pki.serve_body(server, rustls::ALL_VERSIONS, r#"{"data":[],"has_more":false,"token":"tok","state":"ACTIVE"}"#).await;
    let transport = |c: Option<&(String, String)>| Transport::new(Duration::from_secs(5), 2).with_tls(Some(tls(c, &pki.server_ca).load("providers[card].tls").expect("tls")));
    let ctx = CallContext { correlation_id: "c-1".into(), traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into() };
    let base = format!("https://127.0.0.1:{port}");
    let card = CardRef { card_id: "card-1", processor_reference: "tok" };

    let lithic = LithicAdapter::new("lithic", &base, Secret::new("k"), transport(Some(&client))).expect("adapter");
    assert_eq!(lithic.find("card-1", &ctx).await.expect("lithic over mutual TLS"), None);
    let marqeta = MarqetaAdapter::new("marqeta", &format!("{base}/v3"), Secret::new("a"), Secret::new("b"), transport(Some(&client))).expect("adapter");
    let answer = marqeta.settle(&CardCall::Activate { card }, "key", &ctx).await.expect("marqeta over mutual TLS");
    assert!(answer.is_some_and(|a| a.processor_reference.as_deref() == Some("tok")));

    let bare = LithicAdapter::new("lithic", &base, Secret::new("k"), transport(None)).expect("adapter");
    bare.find("card-1", &ctx).await.expect_err("no client certificate, no answer");
    let bare = MarqetaAdapter::new("marqeta", &format!("{base}/v3"), Secret::new("a"), Secret::new("b"), transport(None)).expect("adapter");
    bare.settle(&CardCall::Activate { card }, "key", &ctx).await.expect_err("no client certificate, no answer");
}

/// A client certificate rotates without a new adapter: the Adyen adapter's
/// client comes from a [`RotatingTls`] over files (as a Kubernetes secret
/// volume mounts them). The vendor accepts only the old certificate, then
/// only the new one; a certificate written before its key is refused and the
/// old identity stays in use.
#[tokio::test]
async fn a_rewritten_client_certificate_is_presented_from_the_next_call_on() {
    use switchyard_adapters::payouts::adyen::AdyenAdapter;
    use switchyard_adapters::tls_rotation::RotatingTls;
    use switchyard_adapters::{CallContext, Secret};
    use switchyard_canonical::{Beneficiary, PayoutCommand, PayoutRail};
    let pki = Pki::new();
    let server = leaf(&pki.server_ca, "api.vendor.test", ExtendedKeyUsagePurpose::ServerAuth);
    let old = leaf(&pki.client_ca, "switchyard 2025", ExtendedKeyUsagePurpose::ClientAuth);
    let new = leaf(&pki.client_ca, "switchyard 2026", ExtendedKeyUsagePurpose::ClientAuth);
    let der = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).expect("certificate").as_ref().to_vec();
    let trusted = Arc::new(std::sync::Mutex::new(der(&old.0)));
    let accept: Accept = {
        let trusted = trusted.clone();
        Arc::new(move |c: &CertificateDer<'_>| *trusted.lock().expect("lock") == c.as_ref())
    };
    let port = pki.serve_if(server, rustls::ALL_VERSIONS, r#"{"data":[]}"#, accept).await;

    let dir = std::env::temp_dir().join(format!("switchyard-mtls-rotation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert_file, key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_file, &old.0).expect("write");
    std::fs::write(&key_file, &old.1).expect("write");
    let file = |p: &std::path::Path| Some(SecretSource { file: Some(p.display().to_string()), ..SecretSource::default() });
    let config = TlsConfig { client_cert: file(&cert_file), client_key: file(&key_file), ..tls(None, &pki.server_ca) };
    let rotating = RotatingTls::load("providers[adyen].tls", &config, Transport::new(Duration::from_secs(5), 2)).expect("tls");
    let base = format!("https://127.0.0.1:{port}");
    let adyen = AdyenAdapter::new("adyen", &base, Secret::new("k"), "BA1", Transport::new(Duration::from_secs(5), 2)).expect("adapter").with_client(rotating.client());
    let ctx = CallContext { correlation_id: "c-1".into(), traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into() };
    let cmd = PayoutCommand {
        payout_id: "po-1".into(),
        idempotency_key: "key-1".into(),
        amount_minor: 1250,
        currency: "EUR".into(),
        beneficiary: Beneficiary { name: "A".into(), iban: "DE89370400440532013000".into(), country: "DE".into() },
        rail: PayoutRail::Standard,
        reference: "r".into(),
        requested_at_ms: 1,
        tenant_id: None,
        risk_tier: None,
    };
    let now = 1_765_000_000_000;
    assert_eq!(adyen.find(&cmd, now, &ctx).await.expect("the old certificate is accepted"), None);
    assert!(rotating.refresh(1).expect("unchanged").is_none());

    // The certificate lands before its key: refused naming the field, the
    // old identity stays and still works.
    std::fs::write(&cert_file, &new.0).expect("write");
    let err = rotating.refresh(2).expect_err("a certificate without its key").to_string();
    assert!(err.contains("providers[adyen].tls.client_key") && !err.contains("BEGIN"), "{err}");
    assert_eq!(adyen.find(&cmd, now, &ctx).await.expect("still the old certificate"), None);

    // The key follows, and the vendor trusts only the new certificate.
    std::fs::write(&key_file, &new.1).expect("write");
    *trusted.lock().expect("lock") = der(&new.0);
    let rotation = rotating.refresh(3).expect("read").expect("rotated");
    assert_eq!((rotation.field.as_str(), rotation.generation), ("providers[adyen].tls", 1));
    assert_eq!(adyen.find(&cmd, now, &ctx).await.expect("the new certificate, same adapter, no restart"), None);
    assert!(rotating.refresh(4).expect("unchanged").is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every vendor's client certificate rotates like Adyen's: Stripe (through
/// the payout domain's enum, as the workers wire it) and Lithic take the
/// client of a [`RotatingTls`] with `WithClient`. The vendor reports the certificate each connection presented: the
/// old one, then, after the files are rewritten and the refresher ran, the
/// new one on the next call of the same adapters.
#[tokio::test]
async fn every_vendors_client_certificate_rotates_without_a_new_adapter() {
    use switchyard_adapters::cards::lithic::LithicAdapter;
    use switchyard_adapters::payouts::stripe::StripeAdapter;
    use switchyard_adapters::payouts::PayoutProvider;
    use switchyard_adapters::tls_rotation::{RotatingTls, WithClient};
    use switchyard_adapters::{CallContext, Secret};
    use switchyard_canonical::{Beneficiary, PayoutCommand, PayoutRail};
    let pki = Pki::new();
    let server = leaf(&pki.server_ca, "api.vendor.test", ExtendedKeyUsagePurpose::ServerAuth);
    let old = leaf(&pki.client_ca, "switchyard 2025", ExtendedKeyUsagePurpose::ClientAuth);
    let new = leaf(&pki.client_ca, "switchyard 2026", ExtendedKeyUsagePurpose::ClientAuth);
    let der = |pem: &str| CertificateDer::from_pem_slice(pem.as_bytes()).expect("certificate").as_ref().to_vec();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let accept: Accept = {
        let seen = seen.clone();
        Arc::new(move |c: &CertificateDer<'_>| {
            seen.lock().expect("lock").push(c.as_ref().to_vec());
            true
        })
    };
    let port = pki.serve_if(server, rustls::ALL_VERSIONS, r#"{"data":[],"has_more":false}"#, accept).await;
    // Which certificate the vendor saw on each connection since the last look.
    let presented = || -> Vec<&'static str> {
        std::mem::take(&mut *seen.lock().expect("lock"))
            .iter()
            .map(|c| if *c == der(&old.0) { "old" } else if *c == der(&new.0) { "new" } else { "other" })
            .collect()
    };

    let dir = std::env::temp_dir().join(format!("switchyard-mtls-every-vendor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert_file, key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_file, &old.0).expect("write");
    std::fs::write(&key_file, &old.1).expect("write");
    let file = |p: &std::path::Path| Some(SecretSource { file: Some(p.display().to_string()), ..SecretSource::default() });
    let config = TlsConfig { client_cert: file(&cert_file), client_key: file(&key_file), ..tls(None, &pki.server_ca) };
    let transport = || Transport::new(Duration::from_secs(5), 2);
    let stripe_tls = RotatingTls::load("providers[stripe].tls", &config, transport()).expect("tls");
    let lithic_tls = RotatingTls::load("providers[lithic].tls", &config, transport()).expect("tls");
    let base = format!("https://127.0.0.1:{port}");
    let stripe = PayoutProvider::Stripe(StripeAdapter::new("stripe", &base, Secret::new("sk_test_k"), "acct_1", transport()).expect("adapter"))
        .with_client(stripe_tls.client());
    let lithic = LithicAdapter::new("lithic", &base, Secret::new("k"), transport()).expect("adapter").with_client(lithic_tls.client());
    let ctx = CallContext { correlation_id: "c-1".into(), traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into() };
    let cmd = PayoutCommand {
        payout_id: "po-1".into(),
        idempotency_key: "key-1".into(),
        amount_minor: 1250,
        currency: "EUR".into(),
        beneficiary: Beneficiary { name: "A".into(), iban: "DE89370400440532013000".into(), country: "DE".into() },
        rail: PayoutRail::Standard,
        reference: "r".into(),
        requested_at_ms: 1,
        tenant_id: None,
        risk_tier: None,
    };
    let calls = || async {
        assert_eq!(stripe.find(&cmd, 1_765_000_000_000, &ctx).await.expect("stripe over mutual TLS"), None);
        assert_eq!(lithic.find("card-1", &ctx).await.expect("lithic over mutual TLS"), None);
    };
    calls().await;
    assert_eq!(presented(), ["old", "old"]);

    // Kubernetes rewrites the secret volume; the worker's refresher runs.
    std::fs::write(&cert_file, &new.0).expect("write");
    std::fs::write(&key_file, &new.1).expect("write");
    for rotating in [&stripe_tls, &lithic_tls] {
        let rotation = rotating.refresh(1).expect("read").expect("rotated");
        assert_eq!(rotation.generation, 1);
    }
    calls().await;
    assert_eq!(presented(), ["new", "new"], "the next call of the same adapters presents the new certificate");
    let _ = std::fs::remove_dir_all(&dir);
}

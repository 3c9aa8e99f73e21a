//! Client certificates rotated without a restart: a provider's `tls`
//! material from files (a Kubernetes secret volume, a Vault agent
//! template) is read again on request of the worker's refresher; when it
//! changed and passes the start-up checks (a certificate, a key that
//! belongs to it, not expired), a new `reqwest::Client` is built with the
//! new identity and swapped in. Building a client is cheap next to a
//! vendor call and happens once per rotation; the adapter takes the current
//! client per request ([`LiveClient::current`], a clone of an `Arc`).
//!
//! Calls in flight keep the old client (and its connections) until they
//! finish; new calls open new connections with the new certificate. The
//! overlap is the vendor's: it must trust both certificates until every
//! replica has rotated, as with an API key.

use crate::http::Transport;
use crate::secret::Rotation;
use crate::tls::{TlsConfig, TlsError};
use std::sync::{Arc, Mutex, RwLock};

/// The HTTP client an adapter sends with; the same one for the process's
/// life unless a [`RotatingTls`] replaces it.
#[derive(Clone)]
pub struct LiveClient(Arc<RwLock<reqwest::Client>>);

impl LiveClient {
    /// The client for this request.
    pub fn current(&self) -> reqwest::Client {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn replace(&self, client: reqwest::Client) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = client;
    }
}

impl From<reqwest::Client> for LiveClient {
    fn from(client: reqwest::Client) -> Self {
        Self(Arc::new(RwLock::new(client)))
    }
}

impl std::fmt::Debug for LiveClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveClient")
    }
}

/// An adapter (or a domain's provider enum) whose HTTP client can be
/// replaced by a [`RotatingTls`]'s, so a worker wires every vendor's client
/// certificate rotation the same way, whatever the kind.
pub trait WithClient: Sized {
    /// Sends with `client` from now on instead of the one built from the transport.
    fn with_client(self, client: LiveClient) -> Self;
}

/// `impl WithClient` for adapters holding their client as `http: LiveClient`.
macro_rules! with_client_field {
    ($($adapter:ty),* $(,)?) => {$(
        impl $crate::tls_rotation::WithClient for $adapter {
            fn with_client(self, client: $crate::tls_rotation::LiveClient) -> Self {
                Self { http: client, ..self }
            }
        }
    )*};
}
pub(crate) use with_client_field;

/// Each domain's provider enum hands the client to the adapter it holds; a
/// variant left out of the list does not compile.
macro_rules! with_client_variants {
    ($($module:ident::$enum:ident { $($variant:ident),+ }),+ $(,)?) => {$(
        impl WithClient for crate::$module::$enum {
            fn with_client(self, client: LiveClient) -> Self {
                match self {
                    $(Self::$variant(a) => Self::$variant(WithClient::with_client(a, client)),)+
                }
            }
        }
    )+};
}

with_client_variants!(
    payouts::PayoutProvider { Stripe, Adyen, TrueLayer },
    kyc::KycProvider { Onfido, Sumsub },
    aml::AmlProvider { ComplyAdvantage, OpenSanctions },
    fraud::FraudProvider { Sardine, Seon },
    cards::CardProcessor { Lithic, Marqeta },
    openbanking::OpenBankingProvider { Plaid, TrueLayer },
);

/// One provider's `tls` settings and the client built from them.
pub struct RotatingTls {
    field: String,
    config: TlsConfig,
    /// Timeouts and pool of the provider; its `tls` is replaced on each build.
    transport: Transport,
    client: LiveClient,
    /// Digest of the material the current client was built from, and rotations so far.
    state: Mutex<(Vec<u8>, u64)>,
}

impl std::fmt::Debug for RotatingTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingTls").field("field", &self.field).finish()
    }
}

impl RotatingTls {
    /// Reads and checks the material now and builds the first client;
    /// `field` is the provider's entry (`providers[adyen].tls`).
    pub fn load(field: &str, config: &TlsConfig, transport: Transport) -> Result<Self, TlsError> {
        let digest = digest(field, config)?;
        let client = build(field, config, &transport)?;
        Ok(Self { field: field.to_owned(), config: config.clone(), transport, client: client.into(), state: Mutex::new((digest, 0)) })
    }

    pub fn field(&self) -> &str {
        &self.field
    }

    /// The client adapters send with: it follows every rotation.
    pub fn client(&self) -> LiveClient {
        self.client.clone()
    }

    /// Whether any of the material comes from a file and so can change.
    pub fn reloads(&self) -> bool {
        [&self.config.client_cert, &self.config.client_key, &self.config.ca_bundle].iter().any(|s| s.as_ref().is_some_and(|s| s.file.is_some()))
    }

    /// Reads the files again. Unchanged: nothing. Changed and usable: a new
    /// client is swapped in. Changed but unusable (a certificate without its
    /// new key yet, an expired certificate, a half-written file): an error
    /// naming the field, and the current client stays.
    pub fn refresh(&self, now_ms: i64) -> Result<Option<Rotation>, TlsError> {
        if !self.reloads() {
            return Ok(None);
        }
        // Digest first, build second: a file changing in between makes the
        // next check build once more, never miss the change.
        let fresh = digest(&self.field, &self.config)?;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if fresh == state.0 {
            return Ok(None);
        }
        self.client.replace(build(&self.field, &self.config, &self.transport)?);
        state.0 = fresh;
        state.1 += 1;
        let rotation = Rotation { field: self.field.clone(), generation: state.1, at_ms: now_ms, previous_until_ms: now_ms };
        tracing::info!(field = %rotation.field, generation = rotation.generation, "client certificate rotated; new connections present the new one");
        Ok(Some(rotation))
    }
}

/// A digest over the material as read now, to tell a change without keeping
/// a private key around.
fn digest(field: &str, config: &TlsConfig) -> Result<Vec<u8>, TlsError> {
    let mut hasher = ring::digest::Context::new(&ring::digest::SHA256);
    for (name, source) in [("client_cert", &config.client_cert), ("client_key", &config.client_key), ("ca_bundle", &config.ca_bundle)] {
        let value = match source {
            Some(s) => s.load(&format!("{field}.{name}"))?,
            None => crate::Secret::new(""),
        };
        hasher.update(&(value.expose().len() as u64).to_be_bytes());
        hasher.update(value.expose().as_bytes());
    }
    Ok(hasher.finish().as_ref().to_vec())
}

fn build(field: &str, config: &TlsConfig, transport: &Transport) -> Result<reqwest::Client, TlsError> {
    let tls = config.load(field)?;
    crate::http::client(transport.clone().with_tls(Some(tls))).map_err(|e| TlsError(format!("{field}: {}", e.message)))
}

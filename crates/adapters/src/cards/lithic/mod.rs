//! Lithic (card issuing): webhooks follow Standard Webhooks
//! (`crate::webhooks::Scheme::StandardWebhooks`).

pub(crate) mod webhook;

//! Wise (transfers). Only its webhooks are integrated so far: state changes
//! of transfers, signed with Wise's RSA key (`crate::webhooks::Scheme::WiseRsa`).
//! The payout API adapter (quote -> recipient -> transfer -> fund) is not built.

pub(crate) mod webhook;

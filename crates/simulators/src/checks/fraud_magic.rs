//! Magic inputs shared by the fraud simulators: the email, IP and amount
//! pick the risk, so tests reach every decision through either vendor.
//!
//! | input | risk |
//! |---|---|
//! | email containing `fraudster` | block (on a blocklist, known fraud) |
//! | email at `mailinator.com` | review (disposable email) |
//! | IP in `10.66.0.0/16` | review (proxy/VPN) |
//! | amount of 10,000.00 or more | review (unusual amount) |
//! | anything else | allow |

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Risk {
    Allow,
    Review,
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Blocklisted,
    DisposableEmail,
    Proxy,
    Amount,
}

pub(crate) fn assess(email: Option<&str>, ip: Option<&str>, amount_major: Option<f64>) -> (Risk, Vec<Signal>) {
    let email = email.unwrap_or("").to_ascii_lowercase();
    let mut signals = Vec::new();
    let mut risk = Risk::Allow;
    if email.contains("fraudster") {
        signals.push(Signal::Blocklisted);
        risk = Risk::Block;
    }
    if email.ends_with("@mailinator.com") {
        signals.push(Signal::DisposableEmail);
        risk = risk.max(Risk::Review);
    }
    if ip.is_some_and(|i| i.starts_with("10.66.")) {
        signals.push(Signal::Proxy);
        risk = risk.max(Risk::Review);
    }
    if amount_major.is_some_and(|a| a >= 10_000.0) {
        signals.push(Signal::Amount);
        risk = risk.max(Risk::Review);
    }
    (risk, signals)
}

//! The payout commands the reconciler keeps (`recon_commands`), with the
//! beneficiary's personal data sealed.
//!
//! A kept command is the command's JSON with the beneficiary's name and
//! account and the statement reference blanked, plus:
//! - `fingerprint`: the command's fingerprint as sent, so a settled payout
//!   still completes the worker's idempotency record (whose fingerprint
//!   covers those fields) once they are gone;
//! - `personal`: the blanked fields as JSON, sealed under the payout's own
//!   data key (subject `payout:<payout id>`, envelope encryption as for
//!   applicants, see `switchyard_onboarding::pii`); null when the
//!   reconciler runs without `pii_keys` (then they are not kept at all),
//!   `erased` after `switchyard pii erase --payout`.
//!
//! Everything reconciliation and the settler use stays readable: ids,
//! amount, currency, rail, country, request time. Vendors are asked about a
//! stuck payout by its id (every adapter's `find`), so the settler never
//! needs the sealed part; [`CommandSealer::open`] restores it for support.

use serde_json::Value;
use switchyard_canonical::PayoutCommand;
use switchyard_onboarding::pii::{Pii, PiiError};
pub use switchyard_onboarding::pii::PiiKeyConfig;
use switchyard_store::pii_erase::payout_key_subject;
use switchyard_store::recon::{CommandRecord, KeptRow, ReconStore};

/// Kept commands read per round trip while rewriting unsealed ones.
const RESEAL_PAGE: i64 = 1000;

/// Seals the personal part of payout commands before they are stored.
#[derive(Clone, Default)]
pub struct CommandSealer {
    /// None (or no keys in it): the personal part is dropped, not stored.
    pii: Option<Pii>,
}

/// A kept command as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptCommand {
    /// The command; its personal fields blank unless [`Self::personal`].
    pub command: PayoutCommand,
    /// The fingerprint of the command as it was sent.
    pub fingerprint: String,
    /// Whether the personal fields are there (opened, or a row from before sealing).
    pub personal: bool,
}

/// The sealed value is bound to its row: a copy on another payout or key does not open.
fn context(payout_id: &str, idempotency_key: &str) -> String {
    format!("{payout_id}/{idempotency_key}")
}

impl CommandSealer {
    pub fn new(pii: Option<Pii>) -> Self {
        Self { pii: pii.filter(Pii::encrypts) }
    }

    /// Whether the personal part is kept (sealed) rather than dropped.
    pub fn seals(&self) -> bool {
        self.pii.is_some()
    }

    /// The rows to store for `commands`: one batch of key look-ups for all.
    pub async fn records(&self, commands: &[PayoutCommand]) -> Result<Vec<CommandRecord>, PiiError> {
        let sealed: Vec<Option<String>> = match &self.pii {
            Some(pii) => {
                let items: Vec<(String, String, String)> = commands
                    .iter()
                    .map(|c| {
                        let personal = serde_json::json!({ "name": c.beneficiary.name, "iban": c.beneficiary.iban, "reference": c.reference });
                        (payout_key_subject(&c.payout_id), context(&c.payout_id, &c.idempotency_key), personal.to_string())
                    })
                    .collect();
                pii.seal_many(&items).await?.into_iter().map(Some).collect()
            }
            None => vec![None; commands.len()],
        };
        Ok(commands
            .iter()
            .zip(sealed)
            .filter_map(|(c, personal)| {
                let mut value = serde_json::to_value(c).ok()?;
                value["beneficiary"]["name"] = Value::from("");
                value["beneficiary"]["iban"] = Value::from("");
                value["reference"] = Value::from("");
                value["fingerprint"] = Value::from(c.fingerprint().0);
                value["personal"] = personal.map_or(Value::Null, Value::from);
                Some(CommandRecord { subject_id: c.payout_id.clone(), idempotency_key: c.idempotency_key.clone(), command_json: value.to_string() })
            })
            .collect())
    }

    /// Rewrites the kept commands of `store`'s scope stored before sealing
    /// (the whole command in clear) as new ones are stored: the personal
    /// part sealed, or dropped without keys. Returns how many. Safe beside
    /// the ingest and an erasure (each write compares and sets the old
    /// row) and to run again.
    pub async fn seal_unsealed(&self, store: &ReconStore) -> Result<u64, crate::ReconError> {
        let mut after = (String::new(), String::new());
        let mut rewritten = 0;
        loop {
            let (rows, last) = store.unsealed_commands((&after.0, &after.1), RESEAL_PAGE).await?;
            let parsed: Vec<(KeptRow, PayoutCommand)> = rows
                .into_iter()
                .filter_map(|row| match serde_json::from_str(&row.command) {
                    Ok(command) => Some((row, command)),
                    Err(e) => {
                        tracing::warn!(subject = %row.subject_id, error = %e, "kept payout command unreadable; left as it is");
                        None
                    }
                })
                .collect();
            let commands: Vec<PayoutCommand> = parsed.iter().map(|(_, c)| c.clone()).collect();
            let mut sealed: std::collections::HashMap<(String, String), String> =
                self.records(&commands).await?.into_iter().map(|r| ((r.subject_id, r.idempotency_key), r.command_json)).collect();
            for (row, _) in &parsed {
                let Some(new) = sealed.remove(&(row.subject_id.clone(), row.idempotency_key.clone())) else { continue };
                if store.replace_command(row, &new).await? {
                    rewritten += 1;
                }
            }
            match last {
                Some(last) => after = last,
                None => return Ok(rewritten),
            }
        }
    }

    /// A kept command with its personal part opened where it can be: sealed
    /// and its data key still there. Erased or dropped, the command comes
    /// back with those fields blank (and `personal` false).
    pub async fn open(&self, stored: &str) -> Result<KeptCommand, String> {
        let mut kept = kept(stored)?;
        let sealed: Option<String> = serde_json::from_str::<Value>(stored)
            .ok()
            .and_then(|v| v.get("personal")?.as_str().map(str::to_owned))
            .filter(|s| s != switchyard_store::pii::ERASED);
        let (Some(sealed), Some(pii)) = (sealed, &self.pii) else { return Ok(kept) };
        let c = &mut kept.command;
        match pii.open(&payout_key_subject(&c.payout_id), &context(&c.payout_id, &c.idempotency_key), &sealed).await {
            Ok(json) => {
                let personal: Value = serde_json::from_str(&json).map_err(|e| format!("sealed part: {e}"))?;
                let text = |field: &str| personal.get(field).and_then(Value::as_str).unwrap_or_default().to_owned();
                c.beneficiary.name = text("name");
                c.beneficiary.iban = text("iban");
                c.reference = text("reference");
                kept.personal = true;
            }
            Err(PiiError::Erased) => {}
            Err(e) => return Err(e.to_string()),
        }
        Ok(kept)
    }
}

/// A kept command as stored, without opening anything: what the settler
/// needs. Rows stored before sealing are whole commands; their fingerprint
/// is computed.
pub fn kept(stored: &str) -> Result<KeptCommand, String> {
    let value: Value = serde_json::from_str(stored).map_err(|e| format!("stored command: {e}"))?;
    let fingerprint = value.get("fingerprint").and_then(Value::as_str).map(str::to_owned);
    let legacy = value.get("personal").is_none();
    let command: PayoutCommand = serde_json::from_value(value).map_err(|e| format!("stored command: {e}"))?;
    let fingerprint = fingerprint.unwrap_or_else(|| command.fingerprint().0);
    Ok(KeptCommand { command, fingerprint, personal: legacy })
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_adapters::secret::SecretSource;
    use switchyard_onboarding::pii::PiiKeyConfig;
    use switchyard_store::pii::PiiKeys;
    use switchyard_store::pii_erase::Subject;
    use switchyard_store::Store;

    fn command(id: &str) -> PayoutCommand {
        serde_json::from_value(serde_json::json!({
            "payout_id": id, "idempotency_key": format!("k-{id}"), "amount_minor": 1250, "currency": "EUR",
            "beneficiary": {"name": "Ottoline Brackenbury", "iban": "DE44500105175407324931", "country": "DE"},
            "rail": "STANDARD", "reference": "rent March Brackenbury", "requested_at_ms": 7,
        }))
        .expect("command")
    }

    #[tokio::test]
    async fn a_kept_command_holds_no_personal_data_opens_with_its_key_and_not_after_erasure() {
        let store = Store::connect("sqlite::memory:").await.expect("sqlite");
        let keys = vec![PiiKeyConfig { id: "k1".into(), key: SecretSource::inline("cmVjb24tY29tbWFuZHMtdGVzdC1rZXktMzItYnl0ZXM=") }];
        let sealer = CommandSealer::new(Some(Pii::from_config(&store, &keys).await.expect("pii")));
        let sent = command("po-1");
        let rows = sealer.records(std::slice::from_ref(&sent)).await.expect("seal");
        let stored = &rows[0].command_json;
        assert!(!stored.contains("Brackenbury") && !stored.contains("DE44500105175407324931"), "{stored}");
        assert!(stored.contains("\"amount_minor\":1250") && stored.contains("\"currency\":\"EUR\""), "{stored}");

        let opened = sealer.open(stored).await.expect("open");
        assert_eq!((&opened.command, opened.personal, opened.fingerprint.as_str()), (&sent, true, sent.fingerprint().0.as_str()));
        let settler_view = kept(stored).expect("kept");
        assert!(!settler_view.personal && settler_view.command.beneficiary.iban.is_empty());
        assert_eq!(settler_view.fingerprint, sent.fingerprint().0, "the settler completes the worker's record with the sent fingerprint");

        PiiKeys::open(&store).await.expect("keys").erase_subject(&Subject::Payout("po-1".into()), "t").await.expect("erase");
        let after = sealer.open(stored).await.expect("a backup copy still parses");
        assert!(!after.personal && after.command.beneficiary.name.is_empty(), "the data key is gone: {after:?}");
        assert_eq!((after.command.amount_minor, after.fingerprint), (1250, sent.fingerprint().0));
    }

    #[tokio::test]
    async fn commands_kept_before_sealing_are_sealed_in_place_once() {
        let store = Store::connect("sqlite::memory:").await.expect("sqlite");
        let keys = vec![PiiKeyConfig { id: "k1".into(), key: SecretSource::inline("cmVjb24tY29tbWFuZHMtdGVzdC1rZXktMzItYnl0ZXM=") }];
        let sealer = CommandSealer::new(Some(Pii::from_config(&store, &keys).await.expect("pii")));
        let recon = ReconStore::connect("sqlite::memory:", "s").await.expect("recon");
        let (old, new) = (command("po-3"), command("po-4"));
        let mut legacy = switchyard_store::recon::FactBatch::default();
        legacy.commands.push(CommandRecord { subject_id: "po-3".into(), idempotency_key: "k-po-3".into(), command_json: serde_json::to_string(&old).expect("json") });
        legacy.commands.extend(sealer.records(std::slice::from_ref(&new)).await.expect("seal"));
        recon.ingest(&legacy).await.expect("ingest");

        assert_eq!(sealer.seal_unsealed(&recon).await.expect("reseal"), 1, "only the row from before sealing");
        let stored = recon.command("po-3", "k-po-3").await.expect("read").expect("kept");
        assert!(!stored.contains("Brackenbury") && !stored.contains("DE44500105175407324931"), "{stored}");
        assert_eq!(sealer.open(&stored).await.expect("open").command, old);
        assert_eq!(sealer.seal_unsealed(&recon).await.expect("reseal"), 0, "a second run changes nothing");
    }

    #[tokio::test]
    async fn without_keys_the_personal_part_is_not_kept() {
        let sent = command("po-2");
        let rows = CommandSealer::default().records(std::slice::from_ref(&sent)).await.expect("records");
        let stored = &rows[0].command_json;
        assert!(!stored.contains("Brackenbury") && stored.contains("\"personal\":null"), "{stored}");
        let legacy = kept(&serde_json::to_string(&sent).expect("json")).expect("a row from before sealing");
        assert_eq!((legacy.personal, legacy.fingerprint), (true, sent.fingerprint().0));
    }
}

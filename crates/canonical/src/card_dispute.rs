//! A card dispute (chargeback) as one pure state machine:
//!
//! ```text
//! OPENED -> SUBMITTED -> REPRESENTMENT -> PRE_ARBITRATION -> ARBITRATION
//!    any open state -> WON | LOST | WITHDRAWN (terminal)
//! ```
//!
//! Each state has a deadline (the processor's, when it gives one): past it
//! the dispute is overdue and ops are told.
//!
//! No deadline is computed from the stage either. The response windows
//! are the card networks' (Visa's Core Rules, Mastercard's Chargeback
//! Guide), published to their members and revised twice a year; they
//! differ by network, by region, by dispute condition or reason code and
//! by stage, and run from dates (the transaction's processing date, the
//! day the previous cycle was filed) that neither processor's callback
//! gives us together with the card's network and the reason code: Marqeta's
//! `chargebacktransitions` carry only the state; Lithic's `dispute-v1`
//! carries `representment_date`, `prearbitration_date`,
//! `network_reason_code` but not the network. The current rule texts were
//! not available to cite; public copies are old or second-hand. A computed
//! date that is wrong is worse than none, since ops would plan by it:
//! deadlines stay with the processor's dispute tooling, and a processor
//! field that states one fills `deadline_at_ms` when a mapping reads it
//! (ops/runbooks/cards.md, "Dispute deadlines"). Provisional credit is granted to
//! the cardholder when the dispute opens and is made final when it is won or
//! reversed when it is lost or withdrawn; each is a [`DisputeEffect`] core
//! banking books exactly once.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DisputeReason {
    Fraud,
    NotReceived,
    NotAsDescribed,
    Duplicate,
    IncorrectAmount,
    Cancelled,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DisputeState {
    Opened,
    Submitted,
    Representment,
    PreArbitration,
    Arbitration,
    Won,
    Lost,
    Withdrawn,
}

impl DisputeState {
    pub fn as_str(self) -> &'static str {
        match self {
            DisputeState::Opened => "OPENED",
            DisputeState::Submitted => "SUBMITTED",
            DisputeState::Representment => "REPRESENTMENT",
            DisputeState::PreArbitration => "PRE_ARBITRATION",
            DisputeState::Arbitration => "ARBITRATION",
            DisputeState::Won => "WON",
            DisputeState::Lost => "LOST",
            DisputeState::Withdrawn => "WITHDRAWN",
        }
    }

    pub fn terminal(self) -> bool {
        matches!(self, DisputeState::Won | DisputeState::Lost | DisputeState::Withdrawn)
    }

    fn rank(self) -> u8 {
        match self {
            DisputeState::Opened => 0,
            DisputeState::Submitted => 1,
            DisputeState::Representment => 2,
            DisputeState::PreArbitration => 3,
            DisputeState::Arbitration => 4,
            DisputeState::Won | DisputeState::Lost | DisputeState::Withdrawn => 5,
        }
    }
}

/// What core banking books for the cardholder's provisional credit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CreditMove {
    Granted,
    MadeFinal,
    Reversed,
}

/// One consequence of a transition, published as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisputeEffect {
    Entered { from: DisputeState, to: DisputeState, deadline_at_ms: Option<i64> },
    ProvisionalCredit { movement: CreditMove, amount_minor: i64 },
}

/// The processor reported a move our machine forbids (a lost dispute
/// reopened): nothing changes, ops and the reconciler are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisputeContradiction {
    pub from: DisputeState,
    pub to: DisputeState,
}

/// One dispute's state, stored with the card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeCase {
    pub dispute_id: String,
    pub state: DisputeState,
    pub amount_minor: i64,
    pub currency: String,
    pub deadline_at_ms: Option<i64>,
    /// Whether provisional credit is outstanding (granted, not yet settled).
    pub credit_outstanding: bool,
}

impl DisputeCase {
    /// A dispute just opened, with its provisional credit granted.
    pub fn open(dispute_id: String, amount_minor: i64, currency: String, deadline_at_ms: Option<i64>) -> (Self, Vec<DisputeEffect>) {
        let case = Self { dispute_id, state: DisputeState::Opened, amount_minor, currency, deadline_at_ms, credit_outstanding: true };
        let effects = vec![DisputeEffect::ProvisionalCredit { movement: CreditMove::Granted, amount_minor }];
        (case, effects)
    }

    /// Moves to `to` as the processor reports it. A duplicate or a late
    /// report of an earlier stage changes nothing (no effects), even after
    /// the dispute ended; a forward jump over stages we did not see is taken
    /// as one transition; another ending than the one reached is a
    /// contradiction.
    pub fn apply(&mut self, to: DisputeState, deadline_at_ms: Option<i64>) -> Result<Vec<DisputeEffect>, DisputeContradiction> {
        let from = self.state;
        if to == from {
            return Ok(Vec::new());
        }
        // An earlier stage is a late report, also after the end: callbacks
        // arrive out of order, and an ARBITRATION delivered after CASE_WON
        // is not the processor reopening the case.
        if to.rank() < from.rank() {
            return Ok(Vec::new());
        }
        // Another ending (WON after LOST) is.
        if from.terminal() {
            return Err(DisputeContradiction { from, to });
        }
        self.state = to;
        self.deadline_at_ms = if to.terminal() { None } else { deadline_at_ms };
        let mut effects = vec![DisputeEffect::Entered { from, to, deadline_at_ms: self.deadline_at_ms }];
        if to.terminal() && self.credit_outstanding {
            self.credit_outstanding = false;
            let movement = if to == DisputeState::Won { CreditMove::MadeFinal } else { CreditMove::Reversed };
            effects.push(DisputeEffect::ProvisionalCredit { movement, amount_minor: self.amount_minor });
        }
        Ok(effects)
    }

    /// Past its state's deadline and still open.
    pub fn overdue(&self, now_ms: i64) -> bool {
        !self.state.terminal() && self.deadline_at_ms.is_some_and(|d| now_ms > d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case() -> DisputeCase {
        DisputeCase::open("dp-1".into(), 4_200, "EUR".into(), Some(1_000)).0
    }

    #[test]
    fn opening_grants_provisional_credit_and_winning_makes_it_final_once() {
        let (mut c, effects) = DisputeCase::open("dp-1".into(), 4_200, "EUR".into(), None);
        assert_eq!(effects, vec![DisputeEffect::ProvisionalCredit { movement: CreditMove::Granted, amount_minor: 4_200 }]);
        assert_eq!(c.apply(DisputeState::Submitted, Some(5)).expect("allowed").len(), 1);
        let won = c.apply(DisputeState::Won, None).expect("allowed");
        assert!(won.contains(&DisputeEffect::ProvisionalCredit { movement: CreditMove::MadeFinal, amount_minor: 4_200 }));
        assert_eq!(c.apply(DisputeState::Won, None).expect("allowed"), Vec::new(), "a repeated WON books nothing again");
    }

    #[test]
    fn losing_or_withdrawing_reverses_the_credit() {
        for end in [DisputeState::Lost, DisputeState::Withdrawn] {
            let mut c = case();
            c.apply(DisputeState::Representment, Some(9)).expect("allowed");
            let effects = c.apply(end, None).expect("allowed");
            assert!(effects.contains(&DisputeEffect::ProvisionalCredit { movement: CreditMove::Reversed, amount_minor: 4_200 }), "{end:?}");
            assert!(!c.credit_outstanding);
        }
    }

    #[test]
    fn late_earlier_stages_change_nothing_and_a_reopened_terminal_is_a_contradiction() {
        let mut c = case();
        c.apply(DisputeState::PreArbitration, Some(50)).expect("allowed");
        assert_eq!(c.apply(DisputeState::Submitted, Some(1)).expect("allowed"), Vec::new());
        assert_eq!(c.state, DisputeState::PreArbitration);
        assert_eq!(c.deadline_at_ms, Some(50));
        c.apply(DisputeState::Lost, None).expect("allowed");
        assert_eq!(c.apply(DisputeState::Arbitration, None), Ok(Vec::new()), "a late stage after the end is late, not a reopening");
        assert_eq!(c.state, DisputeState::Lost);
        assert_eq!(c.apply(DisputeState::Won, None), Err(DisputeContradiction { from: DisputeState::Lost, to: DisputeState::Won }));
    }

    #[test]
    fn an_open_dispute_past_its_deadline_is_overdue_and_a_closed_one_never() {
        let mut c = case();
        assert!(!c.overdue(1_000));
        assert!(c.overdue(1_001));
        c.apply(DisputeState::Withdrawn, None).expect("allowed");
        assert!(!c.overdue(i64::MAX));
    }
}

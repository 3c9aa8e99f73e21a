//! Card issuing. Only webhook mapping exists so far (Lithic); the card worker
//! and its API adapters are not built yet.

pub mod lithic;

//! Magic names shared by the AML simulators: a word in the subject's name
//! picks what the lists say, so tests reach every outcome through either
//! vendor.
//!
//! | name contains | lists say |
//! |---|---|
//! | `Blocked` | an exact sanctions entry, same birth year (confirmed where the vendor can tell) |
//! | `Similar` | a similar name on a sanctions list, nothing else agrees (potential) |
//! | `Politician` | a politically exposed person of that name (potential) |
//! | `Cleared` | a hit an analyst already marked false positive (ComplyAdvantage) |
//! | anything else | nothing |

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listing {
    None,
    Sanctioned,
    Similar,
    Pep,
    Cleared,
}

pub(crate) fn listing(name: &str) -> Listing {
    let n = name.to_ascii_lowercase();
    if n.contains("blocked") {
        Listing::Sanctioned
    } else if n.contains("similar") {
        Listing::Similar
    } else if n.contains("politician") {
        Listing::Pep
    } else if n.contains("cleared") {
        Listing::Cleared
    } else {
        Listing::None
    }
}

/// The listed entity's stable id, so a replay and a rescreen name the same entry.
pub(crate) fn entity_id(prefix: &str, name: &str) -> String {
    format!("{prefix}{:016X}", crate::util::fingerprint(&name.to_ascii_lowercase()))
}

//! The stand-in decision: a plain function over the policy and the facts read in the same
//! transaction that records its outcome. No I/O, so it is tested directly and by proptest.

use serde_json::Value;

/// HQ's risk limits for deciding without the processor (the `policy` feed). A cap that HQ
/// never sent is `None`: the two money caps are required (without them nothing is approved
/// offline), the velocity and time limits only apply when set.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub tx_cap_minor: Option<i64>,
    pub exposure_cap_minor: Option<i64>,
    pub velocity_count: Option<i64>,
    pub velocity_amount_minor: Option<i64>,
    pub max_offline_hours: Option<i64>,
    /// Tender kinds allowed offline.
    pub tenders: Vec<String>,
    pub forward_deadline_hours: i64,
}

/// Tenders allowed offline when HQ has not said: never gift cards (their balance lives at
/// the processor) nor app pay.
pub const DEFAULT_OFFLINE_TENDERS: [&str; 2] = ["card_token", "p2pe"];
pub const DEFAULT_FORWARD_DEADLINE_HOURS: i64 = 48;
/// Tender kinds that are a card, and so subject to the per-card velocity limits.
pub const CARD_TENDERS: [&str; 2] = ["card_token", "p2pe"];
/// The longest forwarding deadline kept (ten years): a larger value from HQ is taken as this,
/// so the deadline stays a date (a time past year 9999 would not be one, or sort as one).
pub const MAX_FORWARD_DEADLINE_HOURS: i64 = 10 * 366 * 24;

impl Policy {
    /// From `(key, JSON value)` pairs as the policy table holds them.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = (&'a str, Value)>) -> Self {
        let mut p = Policy {
            tx_cap_minor: None,
            exposure_cap_minor: None,
            velocity_count: None,
            velocity_amount_minor: None,
            max_offline_hours: None,
            tenders: DEFAULT_OFFLINE_TENDERS.map(String::from).to_vec(),
            forward_deadline_hours: DEFAULT_FORWARD_DEADLINE_HOURS,
        };
        for (k, v) in entries {
            let n = v.as_i64().filter(|n| *n >= 0);
            match k {
                "offline_tx_cap_minor" => p.tx_cap_minor = n,
                "offline_exposure_cap_minor" => p.exposure_cap_minor = n,
                "card_velocity_count" => p.velocity_count = n,
                "card_velocity_amount_minor" => p.velocity_amount_minor = n,
                "offline_max_hours" => p.max_offline_hours = n,
                "forward_deadline_hours" => {
                    if let Some(n) = n {
                        p.forward_deadline_hours = n.min(MAX_FORWARD_DEADLINE_HOURS);
                    }
                }
                "offline_tenders" => {
                    if let Some(a) = v.as_array() {
                        p.tenders = a
                            .iter()
                            .filter_map(Value::as_str)
                            .map(String::from)
                            .collect();
                    }
                }
                _ => {}
            }
        }
        p
    }
}

/// What the decision looks at, read inside the writer transaction that records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts<'a> {
    pub amount_minor: i64,
    pub tender_kind: &'a str,
    /// The sum of approved-offline payments not yet forwarded, before this one.
    pub exposure_minor: i64,
    /// This card's stand-in approvals since the processor was last reachable.
    pub card_count: i64,
    pub card_amount_minor: i64,
    /// Whether the tender names a card (velocity needs a fingerprint).
    pub has_card: bool,
    /// Seconds since the processor last answered.
    pub offline_secs: i64,
}

/// Why a payment was declined offline: the code the kiosk shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    PolicyMissing,
    TenderNotAllowedOffline,
    OverTransactionCap,
    CardNotIdentified,
    CardVelocityCount,
    CardVelocityAmount,
    ExposureCap,
    OfflineTooLong,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Self::PolicyMissing => "offline_policy_missing",
            Self::TenderNotAllowedOffline => "tender_not_allowed_offline",
            Self::OverTransactionCap => "over_offline_transaction_cap",
            Self::CardNotIdentified => "card_not_identified",
            Self::CardVelocityCount => "card_velocity_count",
            Self::CardVelocityAmount => "card_velocity_amount",
            Self::ExposureCap => "store_exposure_cap",
            Self::OfflineTooLong => "offline_too_long",
        }
    }
}

/// Approve offline (`Ok`) or decline with the first rule broken. The order puts what the
/// customer can fix (another tender, a smaller amount) before what they cannot.
pub fn stand_in_decision(p: &Policy, f: &Facts<'_>) -> Result<(), Refusal> {
    let (Some(tx_cap), Some(exposure_cap)) = (p.tx_cap_minor, p.exposure_cap_minor) else {
        return Err(Refusal::PolicyMissing);
    };
    if !p.tenders.iter().any(|t| t == f.tender_kind) {
        return Err(Refusal::TenderNotAllowedOffline);
    }
    if let Some(h) = p.max_offline_hours
        && f.offline_secs > h.saturating_mul(3600)
    {
        return Err(Refusal::OfflineTooLong);
    }
    if f.amount_minor > tx_cap {
        return Err(Refusal::OverTransactionCap);
    }
    let velocity_limited = p.velocity_count.is_some() || p.velocity_amount_minor.is_some();
    if velocity_limited && !f.has_card && CARD_TENDERS.contains(&f.tender_kind) {
        // Without brand, last four and expiry the card's velocity cannot be counted.
        return Err(Refusal::CardNotIdentified);
    }
    if f.has_card {
        if let Some(n) = p.velocity_count
            && f.card_count.saturating_add(1) > n
        {
            return Err(Refusal::CardVelocityCount);
        }
        if let Some(a) = p.velocity_amount_minor
            && f.card_amount_minor.saturating_add(f.amount_minor) > a
        {
            return Err(Refusal::CardVelocityAmount);
        }
    }
    if f.exposure_minor.saturating_add(f.amount_minor) > exposure_cap {
        return Err(Refusal::ExposureCap);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn policy() -> Policy {
        Policy::from_entries([
            ("offline_tx_cap_minor", json!(10_000)),
            ("offline_exposure_cap_minor", json!(50_000)),
            ("card_velocity_count", json!(3)),
            ("card_velocity_amount_minor", json!(15_000)),
            ("offline_max_hours", json!(24)),
            ("offline_tenders", json!(["card_token", "p2pe"])),
            ("forward_deadline_hours", json!(72)),
        ])
    }

    fn facts(amount: i64) -> Facts<'static> {
        Facts {
            amount_minor: amount,
            tender_kind: "card_token",
            exposure_minor: 0,
            card_count: 0,
            card_amount_minor: 0,
            has_card: true,
            offline_secs: 60,
        }
    }

    #[test]
    fn each_rule_has_its_reason() {
        let p = policy();
        assert_eq!(p.forward_deadline_hours, 72);
        assert_eq!(stand_in_decision(&p, &facts(10_000)), Ok(()));
        assert_eq!(
            stand_in_decision(&p, &facts(10_001)),
            Err(Refusal::OverTransactionCap)
        );
        let gift = Facts {
            tender_kind: "gift_card",
            ..facts(100)
        };
        assert_eq!(
            stand_in_decision(&p, &gift),
            Err(Refusal::TenderNotAllowedOffline)
        );
        let busy = Facts {
            card_count: 3,
            ..facts(100)
        };
        assert_eq!(
            stand_in_decision(&p, &busy),
            Err(Refusal::CardVelocityCount)
        );
        let spent = Facts {
            card_count: 2,
            card_amount_minor: 14_950,
            ..facts(100)
        };
        assert_eq!(
            stand_in_decision(&p, &spent),
            Err(Refusal::CardVelocityAmount)
        );
        let full = Facts {
            exposure_minor: 49_950,
            ..facts(100)
        };
        assert_eq!(stand_in_decision(&p, &full), Err(Refusal::ExposureCap));
        let exact = Facts {
            exposure_minor: 49_900,
            ..facts(100)
        };
        assert_eq!(stand_in_decision(&p, &exact), Ok(()));
        let long = Facts {
            offline_secs: 24 * 3600 + 1,
            ..facts(100)
        };
        assert_eq!(stand_in_decision(&p, &long), Err(Refusal::OfflineTooLong));
        // A card that cannot be told apart (no brand, last four or expiry) would escape the
        // velocity limits: declined offline while HQ sets them, approved when it does not.
        let no_card = Facts {
            has_card: false,
            card_count: 99,
            tender_kind: "p2pe",
            ..facts(100)
        };
        assert_eq!(
            stand_in_decision(&p, &no_card),
            Err(Refusal::CardNotIdentified)
        );
        let no_velocity = Policy {
            velocity_count: None,
            velocity_amount_minor: None,
            ..policy()
        };
        assert_eq!(stand_in_decision(&no_velocity, &no_card), Ok(()));
        let mut app_pay = policy();
        app_pay.tenders.push("app_pay".into());
        let app = Facts {
            tender_kind: "app_pay",
            ..no_card
        };
        assert_eq!(stand_in_decision(&app_pay, &app), Ok(()), "not a card");
        let none = Policy::from_entries([]);
        assert_eq!(
            stand_in_decision(&none, &facts(1)),
            Err(Refusal::PolicyMissing)
        );
        assert_eq!(none.tenders, vec!["card_token", "p2pe"]);
        let huge = Policy::from_entries([("forward_deadline_hours", json!(i64::MAX))]);
        assert_eq!(huge.forward_deadline_hours, MAX_FORWARD_DEADLINE_HOURS);
    }

    proptest! {
        /// Whatever the inputs, an approval never breaks a cap.
        #[test]
        fn an_approval_never_breaks_a_cap(
            amount in 1i64..200_000, exposure in 0i64..200_000, count in 0i64..10,
            card_amount in 0i64..100_000, offline in 0i64..200_000,
            tx_cap in 0i64..150_000, cap in 0i64..150_000, vc in 0i64..10, va in 0i64..100_000,
            hours in 0i64..72, kind in prop::sample::select(vec!["card_token", "p2pe", "gift_card", "app_pay"]),
            has_card in any::<bool>(),
        ) {
            let p = Policy::from_entries([
                ("offline_tx_cap_minor", json!(tx_cap)),
                ("offline_exposure_cap_minor", json!(cap)),
                ("card_velocity_count", json!(vc)),
                ("card_velocity_amount_minor", json!(va)),
                ("offline_max_hours", json!(hours)),
            ]);
            let f = Facts { amount_minor: amount, tender_kind: kind, exposure_minor: exposure,
                            card_count: count, card_amount_minor: card_amount, has_card,
                            offline_secs: offline };
            if stand_in_decision(&p, &f).is_ok() {
                prop_assert!(has_card, "a card's velocity is always counted");
                prop_assert!(amount <= tx_cap);
                prop_assert!(exposure + amount <= cap);
                prop_assert!(count < vc);
                prop_assert!(card_amount + amount <= va);
                prop_assert!(offline <= hours * 3600);
                prop_assert!(kind == "card_token" || kind == "p2pe");
            }
        }

        /// Approving one by one from zero never takes exposure over the cap.
        #[test]
        fn sequential_approvals_stay_under_the_exposure_cap(amounts in prop::collection::vec(1i64..5_000, 1..200), cap in 0i64..100_000) {
            let p = Policy::from_entries([
                ("offline_tx_cap_minor", json!(10_000)),
                ("offline_exposure_cap_minor", json!(cap)),
            ]);
            let mut exposure = 0;
            for a in amounts {
                let f = Facts { exposure_minor: exposure, ..facts(a) };
                if stand_in_decision(&p, &f).is_ok() {
                    exposure += a;
                }
                prop_assert!(exposure <= cap);
            }
        }
    }
}

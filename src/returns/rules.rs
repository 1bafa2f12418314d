//! The return rules, as plain functions over plain data: what a receipt line still allows,
//! what a refund is worth (in integer minor units, never typed in), and what needs a manager.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::access::Role;

/// One receipt line as sold, with how much of it has been returned so far.
#[derive(Debug, Clone)]
pub struct SoldLine {
    pub line: u32,
    pub qty: i64,
    pub unit_price_minor: i64,
    /// The whole line's discount and tax, as sold.
    pub discount_minor: i64,
    pub tax_minor: i64,
    pub returnable: bool,
    pub return_window_days: i64,
    /// Returned so far, everywhere this store knows of (see [`returned_qty`]).
    pub returned: i64,
}

/// What `n` units of a line are worth, split the way the receipt shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Amount {
    pub price_minor: i64,
    pub discount_minor: i64,
    pub tax_minor: i64,
    /// `price - discount + tax`: what goes back to the customer.
    pub amount_minor: i64,
}

impl SoldLine {
    /// The discount as a refund can take it back: never more than the line's price.
    fn discount(&self) -> i128 {
        i128::from(self.discount_minor).clamp(
            0,
            i128::from(self.qty.max(0)) * i128::from(self.unit_price_minor.max(0)),
        )
    }

    /// What the customer paid for the whole line.
    pub fn paid_minor(&self) -> i64 {
        self.worth_of_first(self.qty).amount_minor
    }

    /// What the first `n` units of the line are worth. The discount is spread rounding up and
    /// the tax rounding down, so `n` units are never worth more than `n / qty` of what was
    /// paid; at `n = qty` both come out exact, so the last unit takes the remainders.
    ///
    /// Worked in `i128`: the feed bounds a receipt's amounts (`MAX_RECEIPT_MINOR`) so that
    /// everything fits an `i64`, and a record that slipped past those bounds saturates here
    /// instead of overflowing (a panic in a debug build, a wrapped refund in release).
    pub fn worth_of_first(&self, n: i64) -> Amount {
        let q = self.qty.max(1);
        let n = n.clamp(0, q);
        let (n128, q128) = (i128::from(n), i128::from(q));
        let discount = if n == q {
            self.discount()
        } else {
            // ceil(n * d / q), d >= 0
            (n128 * self.discount() + q128 - 1) / q128
        };
        let tax = if n == q {
            i128::from(self.tax_minor.max(0))
        } else {
            n128 * i128::from(self.tax_minor.max(0)) / q128
        };
        let price = n128 * i128::from(self.unit_price_minor.max(0));
        let fit = |v: i128| i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX });
        Amount {
            price_minor: fit(price),
            discount_minor: fit(discount),
            tax_minor: fit(tax),
            amount_minor: fit(price - discount + tax),
        }
    }

    /// What returning `k` more units is worth, after `already` units were returned: the
    /// difference of two prefixes, so however a line is returned in parts, the parts add
    /// up to at most what was paid, and to exactly that once every unit is back.
    pub fn refund_for(&self, already: i64, k: i64) -> Amount {
        let a = self.worth_of_first(already);
        let b = self.worth_of_first(already.saturating_add(k));
        Amount {
            price_minor: b.price_minor.saturating_sub(a.price_minor),
            discount_minor: b.discount_minor.saturating_sub(a.discount_minor),
            tax_minor: b.tax_minor.saturating_sub(a.tax_minor),
            amount_minor: b.amount_minor.saturating_sub(a.amount_minor),
        }
    }

    /// When the return window closes for a sale at `sold_at`.
    pub fn window_ends(&self, sold_at: DateTime<Utc>) -> DateTime<Utc> {
        sold_at + Duration::days(self.return_window_days.clamp(0, 3650))
    }

    /// How many can still come back, and why not when none can.
    pub fn returnable(
        &self,
        sold_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> (i64, Option<LineRefusal>) {
        if !self.returnable {
            return (0, Some(LineRefusal::NotReturnable));
        }
        let left = (self.qty - self.returned).max(0);
        if left == 0 {
            return (0, Some(LineRefusal::FullyReturned));
        }
        let ends = self.window_ends(sold_at);
        if now > ends {
            return (0, Some(LineRefusal::WindowPassed { ended_at: ends }));
        }
        (left, None)
    }
}

/// Why a receipt line cannot be returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineRefusal {
    NotReturnable,
    WindowPassed { ended_at: DateTime<Utc> },
    FullyReturned,
}

impl LineRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotReturnable => "not_returnable",
            Self::WindowPassed { .. } => "return_window_passed",
            Self::FullyReturned => "fully_returned",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::NotReturnable => "this item cannot be returned".into(),
            Self::WindowPassed { ended_at } => format!(
                "the return window closed on {}",
                ended_at.format("%Y-%m-%d")
            ),
            Self::FullyReturned => "every unit of this line has already been returned".into(),
        }
    }
}

/// A return of this line taken at this store, as [`returned_qty`] needs it.
#[derive(Debug, Clone, Copy)]
pub struct LocalReturn {
    pub qty: i64,
    /// Central's `returned_qty` for the line when this return was taken.
    pub central_returned_before: i64,
    /// Central has acknowledged this return's journal entry.
    pub acknowledged: bool,
}

/// Units of a line returned so far: central's count from the feed plus the returns taken
/// here that central has not folded into that count yet.
///
/// Central cannot count a return it has not acknowledged, so those always add. Once it has
/// acknowledged some, growth of its count past what it was when the first of them was
/// taken is taken to be them (up to their quantity): after the next receipt update a return
/// is not counted twice, and until then it is not forgotten. Never more than `bought`.
pub fn returned_qty(bought: i64, central_returned: i64, local: &[LocalReturn]) -> i64 {
    let here: i64 = local.iter().map(|r| r.qty).sum();
    let acked: i64 = local.iter().filter(|r| r.acknowledged).map(|r| r.qty).sum();
    let base = local
        .iter()
        .filter(|r| r.acknowledged)
        .map(|r| r.central_returned_before)
        .min();
    let folded = base.map_or(0, |b| (central_returned - b).clamp(0, acked));
    (central_returned.max(0) + here - folded).clamp(0, bought.max(0))
}

/// One line of a return request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineAsk {
    pub line: u32,
    pub qty: i64,
    pub reason: String,
}

/// A line the return will take, with its refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Planned {
    pub line: u32,
    pub qty: i64,
    pub reason: String,
    #[serde(flatten)]
    pub amount: Amount,
}

/// Why a return request is refused, naming the request line at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NoLines,
    /// `field` is the request line's field at fault (`line`, `qty`, `reason`).
    InvalidLine {
        index: usize,
        field: &'static str,
        message: String,
    },
    Line {
        index: usize,
        refusal: LineRefusal,
    },
    TooMany {
        index: usize,
        remaining: i64,
    },
}

/// Checks a request against the receipt's lines (with their returned counts) and prices it.
pub fn plan_return(
    lines: &[SoldLine],
    sold_at: DateTime<Utc>,
    now: DateTime<Utc>,
    request: &[LineAsk],
) -> Result<Vec<Planned>, Refusal> {
    if request.is_empty() {
        return Err(Refusal::NoLines);
    }
    let mut seen = HashSet::new();
    let mut plan = Vec::with_capacity(request.len());
    for (index, ask) in request.iter().enumerate() {
        let Some(sold) = lines.iter().find(|l| l.line == ask.line) else {
            return Err(Refusal::InvalidLine {
                index,
                field: "line",
                message: format!("the receipt has no line {}", ask.line),
            });
        };
        if !seen.insert(ask.line) {
            return Err(Refusal::InvalidLine {
                index,
                field: "line",
                message: format!("line {} appears twice", ask.line),
            });
        }
        if ask.qty < 1 {
            return Err(Refusal::InvalidLine {
                index,
                field: "qty",
                message: "qty must be at least 1".into(),
            });
        }
        let reason = ask.reason.trim();
        if reason.is_empty() || reason.chars().count() > 200 {
            return Err(Refusal::InvalidLine {
                index,
                field: "reason",
                message: "a reason of 1 to 200 characters is needed".into(),
            });
        }
        let (left, why) = sold.returnable(sold_at, now);
        if let Some(refusal) = why {
            return Err(Refusal::Line { index, refusal });
        }
        if ask.qty > left {
            return Err(Refusal::TooMany {
                index,
                remaining: left,
            });
        }
        plan.push(Planned {
            line: ask.line,
            qty: ask.qty,
            reason: reason.to_string(),
            amount: sold.refund_for(sold.returned, ask.qty),
        });
    }
    Ok(plan)
}

/// HQ's offline return limits (the `policy` feed). While central is down an absent limit is
/// zero: a store whose policy never arrived refunds nothing offline without a manager.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub refund_cap_associate_minor: Option<i64>,
    pub offline_refund_budget_minor: Option<i64>,
    /// `no_receipt_returns_offline`: `"store_credit_only"` allows store credit; anything
    /// else (or nothing) refuses returns without a receipt while central is down.
    pub no_receipt_store_credit_offline: bool,
}

/// Why an action needs a manager's override.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum OverrideReason {
    /// The refund is above what an associate (or lead) may refund while central is down:
    /// this refund plus what they refunded offline on the same receipt today without a
    /// manager (`earlier_minor`), so splitting a return does not get round the cap.
    OverAssociateCap {
        cap_minor: i64,
        amount_minor: i64,
        earlier_minor: i64,
    },
    /// The refund would take the day's offline refunds past the store's budget.
    OverOfflineBudget {
        budget_minor: i64,
        used_minor: i64,
        amount_minor: i64,
    },
}

impl OverrideReason {
    pub fn message(&self) -> String {
        match self {
            Self::OverAssociateCap {
                cap_minor,
                amount_minor,
                earlier_minor: 0,
            } => format!(
                "a refund of {amount_minor} is above the {cap_minor} an associate may refund while central is down"
            ),
            Self::OverAssociateCap {
                cap_minor,
                amount_minor,
                earlier_minor,
            } => format!(
                "{earlier_minor} already refunded offline on this receipt today plus {amount_minor} is above the {cap_minor} an associate may refund while central is down"
            ),
            Self::OverOfflineBudget {
                budget_minor,
                used_minor,
                amount_minor,
            } => format!(
                "{used_minor} already refunded offline today plus {amount_minor} would pass the store's offline budget of {budget_minor}"
            ),
        }
    }
}

/// What a refund of `amount` by someone with `role` needs a manager for. Only while central
/// is down (`offline`); managers are not held to the associate's cap, but the store's
/// daily budget holds for everyone (a manager approves their own with their PIN).
/// `earlier_on_receipt` is what the same person refunded offline on the same receipt today
/// without a manager: the cap is on their refunds of a sale, not on each slice of it.
pub fn override_reasons(
    offline: bool,
    role: Role,
    amount: i64,
    earlier_on_receipt: i64,
    used_today: i64,
    policy: &Policy,
) -> Vec<OverrideReason> {
    let mut out = Vec::new();
    if !offline {
        return out;
    }
    let cap = policy.refund_cap_associate_minor.unwrap_or(0);
    let earlier = earlier_on_receipt.max(0);
    if role != Role::Manager && amount > 0 && earlier.saturating_add(amount) > cap {
        out.push(OverrideReason::OverAssociateCap {
            cap_minor: cap,
            amount_minor: amount,
            earlier_minor: earlier,
        });
    }
    let budget = policy.offline_refund_budget_minor.unwrap_or(0);
    if amount > 0 && used_today.saturating_add(amount) > budget {
        out.push(OverrideReason::OverOfflineBudget {
            budget_minor: budget,
            used_minor: used_today,
            amount_minor: amount,
        });
    }
    out
}

/// A tender of the sale, as the refund split sees it.
#[derive(Debug, Clone)]
pub struct TenderFacts {
    /// Whether the processor can refund it (a card, app pay, a gift card: it carries an
    /// authorization or a token).
    pub electronic: bool,
    /// Paid in cash: what of it goes back comes back as cash.
    pub cash: bool,
    pub amount_minor: i64,
    /// Refunded to it already by this store.
    pub refunded_minor: i64,
    /// For a kiosk payment, whether the processor has collected it.
    pub collected: Collected,
}

/// Whether the money a tender stands for was collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collected {
    /// Central's receipts, and kiosk payments the processor approved or captured.
    Yes,
    /// A kiosk payment approved offline (or still with the processor) and not yet captured:
    /// it may still be declined when it is forwarded.
    NotYet,
    /// A kiosk payment declined after forwarding, expired before it could be, or declined.
    Never,
}

impl Collected {
    /// A kiosk payment's status (`payments.status`); `None` for a tender that is not one.
    pub fn of_payment(status: Option<&str>) -> Self {
        match status {
            None | Some("approved" | "captured") => Self::Yes,
            Some("approved_offline" | "pending") => Self::NotYet,
            Some(_) => Self::Never,
        }
    }
}

/// Why a refund cannot go out the way the desk chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenderRefusal {
    /// Part of the sale was never paid (a kiosk payment declined after forwarding or expired):
    /// nothing of it goes back without a manager looking at it.
    NotCollected,
    /// A kiosk payment approved offline has not been captured yet: only a refund to that card
    /// may be taken now (it waits until the payment is captured). Cash or store credit for it
    /// would hand out money the store may never get, the classic stolen-card outage fraud.
    NotYetCollected,
    /// A refund to the original tender would pay `card_minor` of a card tender back in cash,
    /// because the receipt carries nothing the processor could refund it by.
    CardNotRefundable { card_minor: i64 },
}

/// Checks a refund against how the sale was paid. `method_original` is a refund to the
/// original tenders (split by [`split_refund`], with `cash_part` left over for cash);
/// `cash_refunded` is what this store has already paid back in cash on this receipt.
pub fn tender_refusal(
    tenders: &[TenderFacts],
    method_original: bool,
    cash_part: i64,
    cash_refunded: i64,
) -> Option<TenderRefusal> {
    if tenders.iter().any(|t| t.collected == Collected::Never) {
        return Some(TenderRefusal::NotCollected);
    }
    if !method_original {
        return tenders
            .iter()
            .any(|t| t.collected == Collected::NotYet)
            .then_some(TenderRefusal::NotYetCollected);
    }
    let cash_paid = tenders
        .iter()
        .filter(|t| t.cash)
        .fold(0i64, |sum, t| sum.saturating_add(t.amount_minor.max(0)));
    let cash_room = cash_paid.saturating_sub(cash_refunded.max(0)).max(0);
    (cash_part > cash_room).then(|| TenderRefusal::CardNotRefundable {
        card_minor: cash_part - cash_room,
    })
}

/// Splits a refund to the original tender: electronic tenders first, in receipt order, each
/// up to what it paid less what went back to it already; the rest in cash.
/// Returns `(tender index, amount)` per electronic refund and the cash part.
pub fn split_refund(tenders: &[TenderFacts], amount: i64) -> (Vec<(usize, i64)>, i64) {
    let mut left = amount.max(0);
    let mut out = Vec::new();
    for (i, t) in tenders.iter().enumerate() {
        if left == 0 {
            break;
        }
        if !t.electronic {
            continue;
        }
        let room = (t.amount_minor - t.refunded_minor).max(0);
        let take = room.min(left);
        if take > 0 {
            out.push((i, take));
            left -= take;
        }
    }
    (out, left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sold(qty: i64, unit: i64, discount: i64, tax: i64) -> SoldLine {
        SoldLine {
            line: 1,
            qty,
            unit_price_minor: unit,
            discount_minor: discount,
            tax_minor: tax,
            returnable: true,
            return_window_days: 30,
            returned: 0,
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn amounts_as_sold_with_the_last_unit_taking_the_remainder() {
        // 3 x 10.00, 1.00 off the line, 2.39 tax: paid 31.39.
        let l = sold(3, 1000, 100, 239);
        assert_eq!(l.paid_minor(), 3139);
        let one = l.refund_for(0, 1);
        assert_eq!(
            one,
            Amount {
                price_minor: 1000,
                discount_minor: 34,
                tax_minor: 79,
                amount_minor: 1045
            }
        );
        let two = l.refund_for(1, 1);
        assert_eq!(two.amount_minor, 1000 - 33 + 80);
        let last = l.refund_for(2, 1);
        assert_eq!(last.amount_minor, 1000 - 33 + 80);
        assert_eq!(
            one.amount_minor + two.amount_minor + last.amount_minor,
            3139
        );
        assert_eq!(l.refund_for(0, 3).amount_minor, 3139);
        // One unit of a single-unit line is the whole line.
        assert_eq!(sold(1, 1100, 0, 88).refund_for(0, 1).amount_minor, 1188);
        // A discount larger than the price takes the line to zero, never below.
        assert_eq!(sold(2, 100, 500, 0).refund_for(0, 2).amount_minor, 0);
    }

    #[test]
    fn amounts_past_the_feed_bounds_saturate_never_overflow() {
        let l = sold(i64::MAX, i64::MAX, i64::MAX, i64::MAX);
        assert_eq!(l.paid_minor(), i64::MAX);
        assert!(l.refund_for(i64::MAX - 1, i64::MAX).amount_minor >= 0);
        let l = sold(3, i64::MAX / 2, 0, i64::MAX);
        assert_eq!(l.worth_of_first(3).price_minor, i64::MAX);
        assert!(l.refund_for(1, 1).amount_minor >= 0);
    }

    #[test]
    fn every_line_refusal() {
        let sold_at = t("2026-11-01T10:00:00Z");
        let mut l = sold(2, 500, 0, 0);
        assert_eq!(l.returnable(sold_at, t("2026-11-20T10:00:00Z")), (2, None));
        assert_eq!(
            l.returnable(sold_at, t("2026-12-01T10:00:01Z")).1,
            Some(LineRefusal::WindowPassed {
                ended_at: t("2026-12-01T10:00:00Z")
            })
        );
        assert_eq!(
            l.returnable(sold_at, t("2026-12-01T10:00:00Z")).0,
            2,
            "the last second counts"
        );
        l.returned = 2;
        assert_eq!(
            l.returnable(sold_at, sold_at).1,
            Some(LineRefusal::FullyReturned)
        );
        l.returnable = false;
        assert_eq!(
            l.returnable(sold_at, sold_at).1,
            Some(LineRefusal::NotReturnable)
        );
    }

    #[test]
    fn plan_refusals_name_the_line() {
        let sold_at = t("2026-11-01T10:00:00Z");
        let now = t("2026-11-02T10:00:00Z");
        let mut food = sold(1, 300, 0, 0);
        food.line = 2;
        food.returnable = false;
        let lines = [sold(3, 1000, 0, 0), food];
        let ask = |line, qty| LineAsk {
            line,
            qty,
            reason: "defective".into(),
        };
        assert_eq!(
            plan_return(&lines, sold_at, now, &[]),
            Err(Refusal::NoLines)
        );
        assert!(matches!(
            plan_return(&lines, sold_at, now, &[ask(9, 1)]),
            Err(Refusal::InvalidLine { index: 0, .. })
        ));
        assert!(matches!(
            plan_return(&lines, sold_at, now, &[ask(1, 1), ask(1, 1)]),
            Err(Refusal::InvalidLine {
                index: 1,
                field: "line",
                ..
            })
        ));
        assert!(matches!(
            plan_return(&lines, sold_at, now, &[ask(1, 0)]),
            Err(Refusal::InvalidLine { field: "qty", .. })
        ));
        assert_eq!(
            plan_return(&lines, sold_at, now, &[ask(1, 1), ask(2, 1)]),
            Err(Refusal::Line {
                index: 1,
                refusal: LineRefusal::NotReturnable
            })
        );
        assert_eq!(
            plan_return(&lines, sold_at, now, &[ask(1, 4)]),
            Err(Refusal::TooMany {
                index: 0,
                remaining: 3
            })
        );
        let mut blank = ask(1, 1);
        blank.reason = "  ".into();
        assert!(matches!(
            plan_return(&lines, sold_at, now, &[blank]),
            Err(Refusal::InvalidLine { .. })
        ));
        let plan = plan_return(&lines, sold_at, now, &[ask(1, 2)]).unwrap();
        assert_eq!(plan[0].amount.amount_minor, 2000);
    }

    #[test]
    fn returns_here_count_until_central_folds_them_in() {
        let r = |qty, before, acknowledged| LocalReturn {
            qty,
            central_returned_before: before,
            acknowledged,
        };
        // Nothing here: central's count.
        assert_eq!(returned_qty(5, 1, &[]), 1);
        // Taken here, central not told yet: both count.
        assert_eq!(returned_qty(5, 1, &[r(2, 1, false)]), 3);
        // Acknowledged, but the receipt not re-sent yet: still both.
        assert_eq!(returned_qty(5, 1, &[r(2, 1, true)]), 3);
        // The receipt now counts it: not twice.
        assert_eq!(returned_qty(5, 3, &[r(2, 1, true)]), 3);
        // Central's count grew by more (a return elsewhere too): everything counts once.
        assert_eq!(returned_qty(5, 4, &[r(2, 1, true)]), 4);
        // One folded in, a later one not yet acknowledged.
        assert_eq!(returned_qty(5, 2, &[r(1, 1, true), r(1, 2, false)]), 3);
        // Never more than bought.
        assert_eq!(returned_qty(2, 2, &[r(2, 0, false)]), 2);
    }

    #[test]
    fn overrides_only_offline_cap_for_non_managers_budget_for_all() {
        let p = Policy {
            refund_cap_associate_minor: Some(5_000),
            offline_refund_budget_minor: Some(100_000),
            no_receipt_store_credit_offline: false,
        };
        assert!(override_reasons(false, Role::Associate, 90_000, 0, 99_000, &p).is_empty());
        assert!(override_reasons(true, Role::Associate, 5_000, 0, 0, &p).is_empty());
        assert_eq!(
            override_reasons(true, Role::Lead, 5_001, 0, 0, &p),
            vec![OverrideReason::OverAssociateCap {
                cap_minor: 5_000,
                amount_minor: 5_001,
                earlier_minor: 0,
            }]
        );
        // A return split in slices: the cap holds for the sum on the receipt.
        assert!(override_reasons(true, Role::Associate, 2_000, 3_000, 5_000, &p).is_empty());
        assert_eq!(
            override_reasons(true, Role::Associate, 2_000, 4_000, 6_000, &p),
            vec![OverrideReason::OverAssociateCap {
                cap_minor: 5_000,
                amount_minor: 2_000,
                earlier_minor: 4_000,
            }]
        );
        assert!(override_reasons(true, Role::Manager, 5_001, 0, 0, &p).is_empty());
        assert_eq!(
            override_reasons(true, Role::Manager, 2_000, 0, 99_000, &p),
            vec![OverrideReason::OverOfflineBudget {
                budget_minor: 100_000,
                used_minor: 99_000,
                amount_minor: 2_000
            }]
        );
        assert!(
            override_reasons(true, Role::Associate, 1_000, 0, 99_000, &p).is_empty(),
            "exactly at the budget"
        );
        assert_eq!(
            override_reasons(true, Role::Associate, 6_000, 0, 99_000, &p).len(),
            2
        );
        // No policy yet: nothing goes out offline without a manager.
        assert_eq!(
            override_reasons(true, Role::Associate, 1, 0, 0, &Policy::default()).len(),
            2
        );
        assert_eq!(
            override_reasons(true, Role::Manager, 1, 0, 0, &Policy::default()).len(),
            1
        );
        assert!(override_reasons(false, Role::Associate, 1, 0, 0, &Policy::default()).is_empty());
    }

    #[test]
    fn refunds_go_to_electronic_tenders_first_then_cash() {
        let tender = |electronic, amount, refunded| TenderFacts {
            electronic,
            cash: !electronic,
            amount_minor: amount,
            refunded_minor: refunded,
            collected: Collected::Yes,
        };
        let tenders = [tender(false, 500, 0), tender(true, 1000, 0)];
        assert_eq!(split_refund(&tenders, 800), (vec![(1, 800)], 0));
        assert_eq!(split_refund(&tenders, 1300), (vec![(1, 1000)], 300));
        let tenders = [tender(true, 1000, 900), tender(true, 1000, 0)];
        assert_eq!(split_refund(&tenders, 300), (vec![(0, 100), (1, 200)], 0));
        assert_eq!(split_refund(&[tender(false, 100, 0)], 100), (vec![], 100));
    }

    #[test]
    fn refunds_never_pay_uncollected_money_or_a_card_in_cash() {
        let tender = |electronic, cash, amount, collected| TenderFacts {
            electronic,
            cash,
            amount_minor: amount,
            refunded_minor: 0,
            collected,
        };
        let kiosk = |c| [tender(true, false, 1_000, c)];
        // A kiosk card approved offline: to the card only (queued until captured).
        assert_eq!(tender_refusal(&kiosk(Collected::NotYet), true, 0, 0), None);
        assert_eq!(
            tender_refusal(&kiosk(Collected::NotYet), false, 0, 0),
            Some(TenderRefusal::NotYetCollected)
        );
        assert_eq!(tender_refusal(&kiosk(Collected::Yes), false, 0, 0), None);
        // Declined after forwarding or expired: nothing goes back without a manager.
        for original in [true, false] {
            assert_eq!(
                tender_refusal(&kiosk(Collected::Never), original, 0, 0),
                Some(TenderRefusal::NotCollected)
            );
        }
        // Half cash, half a card the receipt cannot refund by: the cash half may go back in
        // cash, once; the card half never silently.
        let mixed = [
            tender(false, true, 500, Collected::Yes),
            tender(false, false, 500, Collected::Yes),
        ];
        assert_eq!(tender_refusal(&mixed, true, 500, 0), None);
        assert_eq!(
            tender_refusal(&mixed, true, 300, 300),
            Some(TenderRefusal::CardNotRefundable { card_minor: 100 })
        );
        assert_eq!(
            tender_refusal(&mixed, true, 1_000, 0),
            Some(TenderRefusal::CardNotRefundable { card_minor: 500 })
        );
        // The desk chose cash: that is the associate's decision, not a silent swap.
        assert_eq!(tender_refusal(&mixed, false, 0, 0), None);
    }

    proptest! {
        /// However a receipt is returned in parts, the refunds of each line add up to at most
        /// what was paid for the units returned (and exactly that once all are back), and no
        /// line is ever returned past what was bought.
        #[test]
        fn partial_refunds_never_exceed_what_was_paid(
            lines in prop::collection::vec((1i64..8, 0i64..20_000, 0i64..3_000, 0i64..2_000), 1..5),
            asks in prop::collection::vec((0usize..5, 1i64..5), 0..20),
        ) {
            let sold_at = t("2026-11-01T10:00:00Z");
            let mut sold_lines: Vec<SoldLine> = lines.iter().enumerate().map(|(i, (q, p, d, tx))| {
                let mut l = sold(*q, *p, *d, *tx);
                l.line = i as u32 + 1;
                l
            }).collect();
            let mut refunded = vec![0i64; sold_lines.len()];
            for (idx, qty) in asks {
                let i = idx % sold_lines.len();
                let ask = [LineAsk { line: sold_lines[i].line, qty, reason: "x".into() }];
                if let Ok(plan) = plan_return(&sold_lines, sold_at, sold_at, &ask) {
                    prop_assert!(plan[0].amount.amount_minor >= 0);
                    refunded[i] += plan[0].amount.amount_minor;
                    sold_lines[i].returned += plan[0].qty;
                }
                for (l, r) in sold_lines.iter().zip(&refunded) {
                    prop_assert!(l.returned <= l.qty);
                    let whole = l.paid_minor();
                    // Never more than the returned units' share of what was paid.
                    prop_assert!(i128::from(*r) * i128::from(l.qty) <= i128::from(whole) * i128::from(l.returned));
                    if l.returned == l.qty {
                        prop_assert_eq!(*r, whole);
                    }
                }
            }
        }
    }
}

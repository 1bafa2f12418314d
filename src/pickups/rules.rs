//! The hand-over rule, as a plain function over plain data: what may leave the store now.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

/// One line of an order as the rule sees it.
#[derive(Debug, Clone)]
pub struct OrderLine {
    pub line: u32,
    pub qty: i64,
    pub handed_over: i64,
    pub requires_id_check: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineQty {
    pub line: u32,
    pub qty: i64,
}

/// Why a hand-over is refused: the error code, the field at fault, and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Cancelled,
    AlreadyHandedOver,
    NotPaid,
    IdCheckRequired,
    InvalidLine { index: usize, message: String },
    TooMany { index: usize, remaining: i64 },
}

pub struct OrderFacts<'a> {
    /// Central's status from the feed.
    pub status: &'a str,
    pub paid: bool,
    pub lines: &'a [OrderLine],
}

/// Decides what a hand-over request gives out. An empty request means everything remaining.
pub fn plan_handover(
    order: &OrderFacts<'_>,
    request: &[LineQty],
    id_checked: bool,
) -> Result<Vec<LineQty>, Refusal> {
    if order.status == "cancelled" {
        return Err(Refusal::Cancelled);
    }
    let remaining: BTreeMap<u32, (i64, bool)> = order
        .lines
        .iter()
        .map(|l| {
            (
                l.line,
                ((l.qty - l.handed_over).max(0), l.requires_id_check),
            )
        })
        .collect();
    if order.status == "handed_over" || remaining.values().all(|(r, _)| *r == 0) {
        return Err(Refusal::AlreadyHandedOver);
    }
    if !order.paid {
        return Err(Refusal::NotPaid);
    }
    let plan: Vec<LineQty> = if request.is_empty() {
        remaining
            .iter()
            .filter(|(_, (r, _))| *r > 0)
            .map(|(line, (r, _))| LineQty {
                line: *line,
                qty: *r,
            })
            .collect()
    } else {
        let mut seen = HashSet::new();
        for (index, want) in request.iter().enumerate() {
            let Some((left, _)) = remaining.get(&want.line) else {
                return Err(Refusal::InvalidLine {
                    index,
                    message: format!("the order has no line {}", want.line),
                });
            };
            if !seen.insert(want.line) {
                return Err(Refusal::InvalidLine {
                    index,
                    message: format!("line {} appears twice", want.line),
                });
            }
            if want.qty < 1 {
                return Err(Refusal::InvalidLine {
                    index,
                    message: "qty must be at least 1".into(),
                });
            }
            if want.qty > *left {
                return Err(Refusal::TooMany {
                    index,
                    remaining: *left,
                });
            }
        }
        request.to_vec()
    };
    if !id_checked
        && plan
            .iter()
            .any(|p| remaining.get(&p.line).is_some_and(|(_, id)| *id))
    {
        return Err(Refusal::IdCheckRequired);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(line: u32, qty: i64, handed_over: i64, id: bool) -> OrderLine {
        OrderLine {
            line,
            qty,
            handed_over,
            requires_id_check: id,
        }
    }

    #[test]
    fn the_refusals() {
        let lines = [line(1, 2, 0, false), line(2, 1, 0, true)];
        let o = |status, paid| OrderFacts {
            status,
            paid,
            lines: &lines,
        };
        assert_eq!(
            plan_handover(&o("cancelled", true), &[], true),
            Err(Refusal::Cancelled)
        );
        assert_eq!(
            plan_handover(&o("handed_over", true), &[], true),
            Err(Refusal::AlreadyHandedOver)
        );
        assert_eq!(
            plan_handover(&o("ready", false), &[], true),
            Err(Refusal::NotPaid)
        );
        assert_eq!(
            plan_handover(&o("ready", true), &[], false),
            Err(Refusal::IdCheckRequired)
        );
        // The line without an ID check may go without one.
        assert_eq!(
            plan_handover(&o("ready", true), &[LineQty { line: 1, qty: 2 }], false)
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            plan_handover(&o("ready", true), &[LineQty { line: 1, qty: 3 }], true),
            Err(Refusal::TooMany {
                index: 0,
                remaining: 2
            })
        );
        assert!(matches!(
            plan_handover(&o("ready", true), &[LineQty { line: 9, qty: 1 }], true),
            Err(Refusal::InvalidLine { .. })
        ));
        let all = plan_handover(&o("ready", true), &[], true).unwrap();
        assert_eq!(
            all,
            vec![LineQty { line: 1, qty: 2 }, LineQty { line: 2, qty: 1 }]
        );
        let done = [line(1, 2, 2, false)];
        assert_eq!(
            plan_handover(
                &OrderFacts {
                    status: "ready",
                    paid: true,
                    lines: &done
                },
                &[],
                true
            ),
            Err(Refusal::AlreadyHandedOver)
        );
    }

    proptest! {
        /// However hand-overs are split, no line ever gives out more than was ordered.
        #[test]
        fn partial_hand_overs_never_exceed_the_order(qtys in prop::collection::vec(1i64..6, 1..5), asks in prop::collection::vec((0usize..5, 1i64..4), 0..12)) {
            let mut lines: Vec<OrderLine> = qtys.iter().enumerate().map(|(i, q)| line(i as u32 + 1, *q, 0, false)).collect();
            for (idx, qty) in asks {
                let want = [LineQty { line: (idx % lines.len()) as u32 + 1, qty }];
                let facts = OrderFacts { status: "ready", paid: true, lines: &lines };
                if let Ok(plan) = plan_handover(&facts, &want, false) {
                    for p in plan {
                        let l = lines.iter_mut().find(|l| l.line == p.line).unwrap();
                        l.handed_over += p.qty;
                    }
                }
                prop_assert!(lines.iter().all(|l| l.handed_over <= l.qty));
            }
        }
    }
}

//! Property test of the wallet over random sequences of orders (COD and
//! not), shipments, deliveries, cancellations, settlements, top-ups and
//! withdrawals: every ledger transaction sums to zero, no withdrawal ever
//! takes more than was available, every delivered COD order's net profit is
//! Komship's formula, and the wallet's balances equal the fold of their
//! postings in the log.

mod common;

use std::collections::BTreeMap;

use common::*;
use kedai_engine::command::{Command, CommandError};
use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::catalog::{Prices, ProductChange};
use kedai_engine::domain::money::{BasisPoints, Money};
use kedai_engine::domain::order::Transition;
use kedai_engine::domain::rejection::Rejection;
use kedai_engine::domain::wallet::{
    Account, EntryKind, RequestWithdrawal, WalletEntry, WithdrawalAction,
};
use kedai_engine::store::conformance::read_everything;
use proptest::prelude::*;
use uuid::Uuid;

#[derive(Clone, Debug)]
enum Op {
    Place(u128, bool, i64),
    Ship(u128),
    Deliver(u128),
    Cancel(u128),
    Settle(u128),
    TopUp(i64),
    Withdraw(u128, i64),
    Finish(u128, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u128..4, any::<bool>(), 0i64..40_000).prop_map(|(n, cod, s)| Op::Place(n, cod, s)),
        3 => (0u128..4).prop_map(Op::Ship),
        3 => (0u128..4).prop_map(Op::Deliver),
        1 => (0u128..4).prop_map(Op::Cancel),
        2 => (0u128..4).prop_map(Op::Settle),
        1 => (1i64..300_000).prop_map(Op::TopUp),
        2 => (0u128..4, 40_000i64..400_000).prop_map(|(n, a)| Op::Withdraw(n, a)),
        2 => (0u128..4, any::<bool>()).prop_map(|(n, ok)| Op::Finish(n, ok)),
    ]
}

fn withdrawal_id(n: u128) -> Uuid {
    Uuid::from_u128(0x3d00 + n)
}

fn command(op: &Op) -> Command {
    match op {
        Op::Place(n, cod, shipping) => {
            let mut cmd = place(order_id(*n), vec![line("KAOS-M", 1)]);
            cmd.cod = *cod;
            cmd.shipping.cost = Money(*shipping);
            cmd.shipping.courier = if n % 2 == 0 {
                "JNE".into()
            } else {
                "SICEPAT".into()
            };
            Command::PlaceOrder(cmd)
        }
        Op::Ship(n) => Command::TransitionOrder {
            order_id: order_id(*n),
            transition: Transition::Ship {
                awb: format!("AWB{n}"),
            },
        },
        Op::Deliver(n) => Command::TransitionOrder {
            order_id: order_id(*n),
            transition: Transition::Deliver,
        },
        Op::Cancel(n) => Command::TransitionOrder {
            order_id: order_id(*n),
            transition: Transition::Cancel {
                reason: String::new(),
            },
        },
        Op::Settle(n) => Command::WalletEntry(WalletEntry::SettleCod {
            order_ids: vec![order_id(*n)],
        }),
        Op::TopUp(a) => Command::WalletEntry(WalletEntry::TopUp {
            amount: Money(*a),
            note: String::new(),
        }),
        Op::Withdraw(n, a) => Command::RequestWithdrawal(RequestWithdrawal {
            withdrawal_id: withdrawal_id(*n),
            amount: Money(*a),
            bank_name: "BCA".into(),
            bank_account_no: "1234567890".into(),
            bank_account_name: "Toko".into(),
            note: String::new(),
        }),
        Op::Finish(n, ok) => Command::ActOnWithdrawal {
            withdrawal_id: withdrawal_id(*n),
            action: if *ok {
                WithdrawalAction::Complete {
                    transfer_reference: format!("TRF{n}"),
                }
            } else {
                WithdrawalAction::Reject {
                    reason: "no".into(),
                }
            },
        },
    }
}

fn expected(r: &Rejection) -> bool {
    matches!(
        r,
        Rejection::IllegalTransition { .. }
            | Rejection::UnknownOrder { .. }
            | Rejection::OrderExists { .. }
            | Rejection::NothingToSettle { .. }
            | Rejection::InsufficientBalance { .. }
            | Rejection::WithdrawalBelowMinimum { .. }
            | Rejection::WithdrawalExists { .. }
            | Rejection::UnknownWithdrawal { .. }
            | Rejection::IllegalWithdrawalTransition { .. }
            | Rejection::InsufficientStock { .. }
    )
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let w = World::new().await;
    w.ok(Command::ChangeProduct {
        product_id: KAOS,
        change: ProductChange::SetPrices {
            sku: sku("KAOS-M"),
            prices: Prices::flat(Money(100_000)),
        },
    })
    .await;
    w.receive("KAOS-M", MALANG, 1_000).await;
    for op in &ops {
        let available_before = w.balance(Account::Available).await;
        match w.run(command(op)).await {
            Ok(done) => {
                for (_, e) in &done.events {
                    match e {
                        DomainEvent::LedgerTransactionRecorded(t) => {
                            let t = &t.transaction;
                            prop_assert_eq!(t.sum(), Money::ZERO, "{:?} does not balance", t.kind);
                            if let Some(cod) = t.cod {
                                let rate = if cod.cashback_rate == BasisPoints(3_000) {
                                    3_000
                                } else {
                                    2_500
                                };
                                let fee = BasisPoints(280).apply(cod.grand_total);
                                let cashback = BasisPoints(rate).apply(cod.shipping_cost);
                                prop_assert_eq!(
                                    cod.net_profit,
                                    cod.grand_total - cod.shipping_cost - fee + cashback
                                );
                                prop_assert_eq!(t.change(Account::Pending), cod.net_profit);
                            }
                            if t.kind == EntryKind::WithdrawalRequested {
                                let held = t.change(Account::Withdrawing);
                                prop_assert!(
                                    held.0 <= available_before,
                                    "withdrew {} with {} available",
                                    held.0,
                                    available_before
                                );
                            }
                        }
                        DomainEvent::WithdrawalRequested(r) => {
                            prop_assert_eq!(r.available_before.0, available_before)
                        }
                        _ => {}
                    }
                }
            }
            Err(CommandError::Rejected(r)) => {
                prop_assert!(expected(&r), "{:?}: unexpected {}", op, r)
            }
            Err(e) => return Err(TestCaseError::fail(format!("{op:?}: {e}"))),
        }
    }
    let mut folded: BTreeMap<Account, i64> = BTreeMap::new();
    for e in read_everything(&**w.engine.store()).await {
        if let Some(DomainEvent::LedgerTransactionRecorded(t)) =
            DomainEvent::decode(&e.event_type, &e.payload).unwrap()
        {
            for p in t.transaction.postings {
                *folded.entry(p.account).or_default() += p.amount.0;
            }
        }
    }
    let wallet = w.wallet().await;
    for account in [
        Account::Pending,
        Account::Available,
        Account::Withdrawing,
        Account::Buyer,
        Account::Courier,
        Account::Bank,
        Account::Platform,
    ] {
        prop_assert_eq!(
            wallet.balance(account).0,
            folded.get(&account).copied().unwrap_or(0)
        );
    }
    prop_assert_eq!(folded.values().sum::<i64>(), 0);
    prop_assert!(
        wallet.balance(Account::Pending).0 >= 0 && wallet.balance(Account::Withdrawing).0 >= 0
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_balances_and_withdrawals_never_exceed_what_is_available(ops in prop::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run(ops))?;
    }
}

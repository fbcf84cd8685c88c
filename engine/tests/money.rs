//! Given / when / then tests of the seller's wallet (the ledger), driven by
//! orders and by direct entries, withdrawals and expenses, with DOMAIN.md's
//! worked examples.

mod common;

use common::*;
use kedai_engine::command::{Command, CommandError};
use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::catalog::{Prices, ProductChange};
use kedai_engine::domain::events::ShopSettings;
use kedai_engine::domain::money::{Currency, Money};
use kedai_engine::domain::order::Transition;
use kedai_engine::domain::rejection::Rejection;
use kedai_engine::domain::wallet::{
    Account, EntryKind, RecordExpense, RequestWithdrawal, WalletEntry, WithdrawalAction,
};
use uuid::Uuid;

async fn priced(w: &World, price: i64) {
    w.ok(Command::ChangeProduct {
        product_id: KAOS,
        change: ProductChange::SetPrices {
            sku: sku("KAOS-M"),
            prices: Prices::flat(Money(price)),
        },
    })
    .await;
    w.receive("KAOS-M", MALANG, 100).await;
}

/// Places and delivers an order; returns the delivery's ledger transaction.
async fn deliver(
    w: &World,
    n: u128,
    cod: bool,
    courier: &str,
    shipping: i64,
) -> Option<DomainEvent> {
    let mut cmd = place(order_id(n), vec![line("KAOS-M", 1)]);
    cmd.cod = cod;
    cmd.shipping.courier = courier.into();
    cmd.shipping.cost = Money(shipping);
    w.ok(Command::PlaceOrder(cmd)).await;
    w.transition(
        order_id(n),
        Transition::Ship {
            awb: format!("AWB{n}"),
        },
    )
    .await
    .unwrap();
    let delivered = w
        .transition(order_id(n), Transition::Deliver)
        .await
        .unwrap();
    delivered
        .events
        .into_iter()
        .map(|(_, e)| e)
        .find(|e| matches!(e, DomainEvent::LedgerTransactionRecorded(_)))
}

fn transaction(e: &DomainEvent) -> &kedai_engine::domain::wallet::LedgerTransaction {
    match e {
        DomainEvent::LedgerTransactionRecorded(t) => &t.transaction,
        other => panic!("not a ledger transaction: {other:?}"),
    }
}

#[tokio::test]
async fn a_delivered_cod_order_puts_its_net_profit_in_pending_in_the_same_append() {
    // DOMAIN.md: subtotal 100,000, shipping 14,000 (JNE, cashback 25%):
    // COD fee 3,192, cashback 3,500, net profit 100,308.
    let w = World::new().await;
    priced(&w, 100_000).await;
    let entry = deliver(&w, 1, true, "JNE", 14_000)
        .await
        .expect("a ledger transaction with the delivery");
    let t = transaction(&entry);
    assert_eq!(t.kind, EntryKind::CodDelivered);
    assert_eq!(t.sum(), Money::ZERO);
    let cod = t.cod.unwrap();
    assert_eq!(
        (
            cod.grand_total,
            cod.service_fee,
            cod.cashback,
            cod.net_profit
        ),
        (Money(114_000), Money(3_192), Money(3_500), Money(100_308))
    );
    assert_eq!(w.balance(Account::Pending).await, 100_308);
    assert_eq!(w.balance(Account::Available).await, 0);
}

#[tokio::test]
async fn sicepat_cod_with_thirty_percent_cashback() {
    // Grand total 138,000 with carrier shipping 38,000: fee 3,864, cashback
    // 11,400, net profit 107,536.
    let w = World::new().await;
    priced(&w, 100_000).await;
    let entry = deliver(&w, 1, true, "SiCepat", 38_000).await.unwrap();
    assert_eq!(transaction(&entry).cod.unwrap().net_profit, Money(107_536));
}

#[tokio::test]
async fn settlement_moves_pending_to_available_once() {
    let w = World::new().await;
    priced(&w, 100_000).await;
    deliver(&w, 1, true, "JNE", 14_000).await;
    deliver(&w, 2, true, "JNE", 14_000).await;
    w.ok(Command::WalletEntry(WalletEntry::SettleCod {
        order_ids: vec![order_id(1)],
    }))
    .await;
    assert_eq!(
        (
            w.balance(Account::Pending).await,
            w.balance(Account::Available).await
        ),
        (100_308, 100_308)
    );
    let again = w
        .rejected(Command::WalletEntry(WalletEntry::SettleCod {
            order_ids: vec![order_id(1)],
        }))
        .await;
    assert_eq!(
        again,
        Rejection::NothingToSettle {
            order_id: order_id(1)
        }
    );
    let never = w
        .rejected(Command::WalletEntry(WalletEntry::SettleCod {
            order_ids: vec![order_id(2), order_id(9)],
        }))
        .await;
    assert_eq!(
        never,
        Rejection::NothingToSettle {
            order_id: order_id(9)
        },
        "all or nothing"
    );
    assert_eq!(w.balance(Account::Pending).await, 100_308);
}

#[tokio::test]
async fn non_cod_shipping_is_charged_at_pickup_and_refunded_if_cancelled() {
    let w = World::new().await;
    priced(&w, 50_000).await;
    w.ok(Command::WalletEntry(WalletEntry::TopUp {
        amount: Money(100_000),
        note: "modal".into(),
    }))
    .await;
    w.ok(Command::PlaceOrder(place(
        order_id(1),
        vec![line("KAOS-M", 1)],
    )))
    .await;
    w.transition(order_id(1), Transition::Pack).await.unwrap();
    w.transition(order_id(1), Transition::Ready).await.unwrap();
    assert_eq!(
        w.balance(Account::Available).await,
        90_000,
        "shipping 10,000 charged"
    );
    w.transition(
        order_id(1),
        Transition::Cancel {
            reason: "batal".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(w.balance(Account::Available).await, 100_000, "refunded");
    // Charged once, even when shipped after the pickup was booked.
    w.ok(Command::PlaceOrder(place(
        order_id(2),
        vec![line("KAOS-M", 1)],
    )))
    .await;
    w.transition(order_id(2), Transition::Pack).await.unwrap();
    w.transition(order_id(2), Transition::Ready).await.unwrap();
    w.transition(order_id(2), Transition::Ship { awb: "X".into() })
        .await
        .unwrap();
    assert_eq!(w.balance(Account::Available).await, 90_000);
    // A returned parcel's shipping back is charged too.
    w.transition(
        order_id(2),
        Transition::StartReturn {
            reason: "ditolak".into(),
        },
    )
    .await
    .unwrap();
    w.transition(order_id(2), Transition::ReceiveReturn)
        .await
        .unwrap();
    assert_eq!(w.balance(Account::Available).await, 80_000);
    w.ok(Command::WalletEntry(WalletEntry::ReturnClaim {
        order_id: order_id(2),
        amount: Money(10_000),
        note: "klaim".into(),
    }))
    .await;
    assert_eq!(w.balance(Account::Available).await, 90_000);
}

#[tokio::test]
async fn compensation_needs_a_lost_or_returned_order() {
    let w = World::new().await;
    priced(&w, 50_000).await;
    w.ok(Command::PlaceOrder(place(
        order_id(1),
        vec![line("KAOS-M", 1)],
    )))
    .await;
    let early = w
        .rejected(Command::WalletEntry(WalletEntry::Compensation {
            order_id: order_id(1),
            amount: Money(50_000),
            note: String::new(),
        }))
        .await;
    assert!(
        matches!(early, Rejection::IllegalTransition { .. }),
        "{early}"
    );
    w.transition(order_id(1), Transition::Ship { awb: "X".into() })
        .await
        .unwrap();
    w.transition(
        order_id(1),
        Transition::Lose {
            note: "hilang".into(),
        },
    )
    .await
    .unwrap();
    w.ok(Command::WalletEntry(WalletEntry::Compensation {
        order_id: order_id(1),
        amount: Money(50_000),
        note: "ganti rugi".into(),
    }))
    .await;
    assert_eq!(w.balance(Account::Available).await, 50_000 - 10_000);
    let unknown = w
        .rejected(Command::WalletEntry(WalletEntry::Compensation {
            order_id: order_id(7),
            amount: Money(1),
            note: String::new(),
        }))
        .await;
    assert_eq!(
        unknown,
        Rejection::UnknownOrder {
            order_id: order_id(7)
        }
    );
}

fn withdrawal(id: u128, amount: i64) -> RequestWithdrawal {
    RequestWithdrawal {
        withdrawal_id: Uuid::from_u128(0x3d00 + id),
        amount: Money(amount),
        bank_name: "BCA".into(),
        bank_account_no: "981238787".into(),
        bank_account_name: "Toko Batik".into(),
        note: String::new(),
    }
}

#[tokio::test]
async fn komship_withdrawal_example_and_its_lifecycle() {
    // Beginning balance 1,000,000; withdrawal 700,000; current 300,000.
    let w = World::new().await;
    w.ok(Command::WalletEntry(WalletEntry::TopUp {
        amount: Money(1_000_000),
        note: String::new(),
    }))
    .await;
    let req = withdrawal(1, 700_000);
    let done = w.ok(Command::RequestWithdrawal(req.clone())).await;
    match &done.events[0].1 {
        DomainEvent::WithdrawalRequested(r) => assert_eq!(r.available_before, Money(1_000_000)),
        other => panic!("{other:?}"),
    }
    assert_eq!(w.balance(Account::Available).await, 300_000);
    assert_eq!(w.balance(Account::Withdrawing).await, 700_000);
    let id = req.withdrawal_id;
    w.ok(Command::ActOnWithdrawal {
        withdrawal_id: id,
        action: WithdrawalAction::Review { note: "cek".into() },
    })
    .await;
    let cancel = w
        .run(Command::ActOnWithdrawal {
            withdrawal_id: id,
            action: WithdrawalAction::Cancel {
                reason: String::new(),
            },
        })
        .await;
    assert!(
        matches!(
            cancel,
            Err(CommandError::Rejected(
                Rejection::IllegalWithdrawalTransition { .. }
            ))
        ),
        "a reviewed withdrawal is not cancelled by the seller"
    );
    w.ok(Command::ActOnWithdrawal {
        withdrawal_id: id,
        action: WithdrawalAction::Complete {
            transfer_reference: "TRF-20211014-001".into(),
        },
    })
    .await;
    assert_eq!(
        (
            w.balance(Account::Withdrawing).await,
            w.balance(Account::Bank).await
        ),
        (0, 700_000 - 1_000_000)
    );
    let again = w
        .rejected(Command::ActOnWithdrawal {
            withdrawal_id: id,
            action: WithdrawalAction::Reject { reason: "x".into() },
        })
        .await;
    assert_eq!(
        again.to_string(),
        format!("cannot reject withdrawal {id}: it is completed")
    );
}

#[tokio::test]
async fn withdrawals_need_the_minimum_and_the_fee_covered_and_return_when_rejected() {
    let w = World::new().await;
    let mut settings = ShopSettings::defaults(Currency::Idr);
    settings.withdrawal_fee = Money(2_500);
    w.ok(Command::ChangeShopSettings { settings }).await;
    w.ok(Command::WalletEntry(WalletEntry::TopUp {
        amount: Money(100_000),
        note: String::new(),
    }))
    .await;
    assert_eq!(
        w.rejected(Command::RequestWithdrawal(withdrawal(1, 49_999)))
            .await,
        Rejection::WithdrawalBelowMinimum {
            minimum: Money(50_000)
        }
    );
    assert_eq!(
        w.rejected(Command::RequestWithdrawal(withdrawal(1, 98_000)))
            .await,
        Rejection::InsufficientBalance {
            available: Money(100_000),
            needed: Money(100_500)
        }
    );
    w.ok(Command::RequestWithdrawal(withdrawal(1, 97_500)))
        .await;
    assert_eq!(w.balance(Account::Available).await, 0);
    w.ok(Command::ActOnWithdrawal {
        withdrawal_id: withdrawal(1, 0).withdrawal_id,
        action: WithdrawalAction::Reject {
            reason: "rekening salah".into(),
        },
    })
    .await;
    assert_eq!(
        (
            w.balance(Account::Available).await,
            w.balance(Account::Withdrawing).await
        ),
        (100_000, 0)
    );
    let bad = w
        .run(Command::RequestWithdrawal(RequestWithdrawal {
            bank_account_no: "12".into(),
            ..withdrawal(2, 60_000)
        }))
        .await;
    assert!(matches!(bad, Err(CommandError::Invalid(e)) if e[0].field == "bank_account_no"));
}

#[tokio::test]
async fn every_ledger_transaction_balances_and_the_buckets_are_their_fold() {
    let w = World::new().await;
    priced(&w, 75_000).await;
    w.ok(Command::WalletEntry(WalletEntry::TopUp {
        amount: Money(200_000),
        note: String::new(),
    }))
    .await;
    for n in 1..=4 {
        deliver(&w, n, n % 2 == 0, "JNE", 12_000).await;
    }
    w.ok(Command::WalletEntry(WalletEntry::SettleCod {
        order_ids: vec![order_id(2)],
    }))
    .await;
    w.ok(Command::RequestWithdrawal(withdrawal(1, 60_000)))
        .await;
    let log = kedai_engine::store::conformance::read_everything(&**w.engine.store()).await;
    let mut folded = std::collections::BTreeMap::<Account, i64>::new();
    for e in &log {
        if let Some(DomainEvent::LedgerTransactionRecorded(t)) =
            DomainEvent::decode(&e.event_type, &e.payload).unwrap()
        {
            assert_eq!(t.transaction.sum(), Money::ZERO, "{:?}", t.transaction.kind);
            for p in &t.transaction.postings {
                *folded.entry(p.account).or_default() += p.amount.0;
            }
        }
    }
    let wallet = w.wallet().await;
    for account in Account::SELLER {
        assert_eq!(
            wallet.balance(account).0,
            folded.get(&account).copied().unwrap_or(0)
        );
    }
    assert_eq!(folded.values().sum::<i64>(), 0, "money is conserved");
}

#[tokio::test]
async fn expenses_are_recorded_and_voided() {
    let w = World::new().await;
    let id = Uuid::from_u128(0xe1);
    let cmd = RecordExpense {
        expense_id: id,
        title: "Plastik packing".into(),
        amount: Money(1_500),
        quantity: 100,
        date: chrono::NaiveDate::from_ymd_opt(2024, 12, 12).unwrap(),
        note: String::new(),
    };
    let done = w.ok(Command::RecordExpense(cmd.clone())).await;
    assert!(
        matches!(&done.events[0].1, DomainEvent::ExpenseRecorded(e) if e.total == Money(150_000))
    );
    assert_eq!(
        w.rejected(Command::RecordExpense(cmd.clone())).await,
        Rejection::ExpenseExists { expense_id: id }
    );
    w.ok(Command::VoidExpense {
        expense_id: id,
        reason: "salah input".into(),
    })
    .await;
    let zero = w
        .run(Command::RecordExpense(RecordExpense {
            quantity: 0,
            ..cmd.clone()
        }))
        .await;
    assert!(matches!(zero, Err(CommandError::Invalid(e)) if e[0].field == "quantity"));
    // Each within its bounds, but a total of 5e18: two on one day would not
    // fit in a day's sum of expenses.
    let huge = w
        .run(Command::RecordExpense(RecordExpense {
            expense_id: Uuid::from_u128(0xe2),
            amount: Money(5_000_000_000_000),
            quantity: 1_000_000,
            ..cmd.clone()
        }))
        .await;
    assert!(
        matches!(&huge, Err(CommandError::Invalid(e))
            if e[0].field == "quantity" && e[0].message.contains("at most 10000000000000")),
        "{huge:?}"
    );
    let largest = w
        .ok(Command::RecordExpense(RecordExpense {
            expense_id: Uuid::from_u128(0xe3),
            amount: Money(10_000_000),
            quantity: 1_000_000,
            ..cmd
        }))
        .await;
    assert!(
        matches!(&largest.events[0].1, DomainEvent::ExpenseRecorded(e) if e.total == Money(10_000_000_000_000))
    );
}

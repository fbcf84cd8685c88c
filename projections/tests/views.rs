//! Given events (made by the real command engine) / expect projections,
//! with the sources' sample figures where they apply.

use std::sync::Arc;

use chrono::NaiveDate;
use kedai_engine::Timestamp;
use kedai_engine::command::Command;
use kedai_engine::domain::catalog::{CustomerCategory, Prices, ProductChange};
use kedai_engine::domain::chat::{
    ChatChannel, ConversationChange, Party, ReceiveMessage, SendMessage, conversation_id,
};
use kedai_engine::domain::events::{DomainEvent, ExpenseRecorded};
use kedai_engine::domain::ids::CustomerId;
use kedai_engine::domain::ids::streams;
use kedai_engine::domain::money::Money;
use kedai_engine::domain::order::{Channel, OrderStatus, PaymentStatus, Transition};
use kedai_engine::domain::wallet::{RecordExpense, RequestWithdrawal, WalletEntry};
use kedai_engine::store::memory::MemoryStore;
use kedai_engine::testkit::*;
use kedai_projections::analytics::{Granularity, Group, RankBy};
use kedai_projections::inbox::InboxQuery;
use kedai_projections::orders::{OrderQuery, Sort};
use kedai_projections::runner::rebuild;
use kedai_projections::{Projections, ShopView};
use uuid::Uuid;

/// Local midnight (UTC+7) of a date, plus hours.
fn wib(date: &str, hours: i64) -> Timestamp {
    let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
    let utc = d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros() - 7 * 3_600_000_000;
    Timestamp(utc + hours * 3_600_000_000)
}

async fn view(w: &World) -> (Projections, ShopView) {
    let p = rebuild(&**w.engine.store(), Projections::new(), None, |_| {})
        .await
        .unwrap();
    let shop = p.shop(w.shop).unwrap().clone();
    (p, shop)
}

async fn world() -> World {
    World::on(Arc::new(MemoryStore::new()), true).await
}

async fn price(w: &World, price: i64) {
    w.ok(Command::ChangeProduct {
        product_id: KAOS,
        change: ProductChange::SetPrices {
            sku: sku("KAOS-M"),
            prices: Prices::flat(Money(price)),
        },
    })
    .await;
}

#[tokio::test]
async fn balances_follow_the_ledger_with_running_balances() {
    let w = world().await;
    price(&w, 100_000).await;
    w.receive("KAOS-M", MALANG, 10).await;
    let mut cod = place(order_id(1), vec![line("KAOS-M", 1)]);
    cod.cod = true;
    cod.shipping.cost = Money(14_000);
    w.ok(Command::PlaceOrder(cod)).await;
    w.transition(order_id(1), Transition::Ship { awb: "JNE1".into() })
        .await
        .unwrap();
    w.transition(order_id(1), Transition::Deliver)
        .await
        .unwrap();
    let (_, v) = view(&w).await;
    assert_eq!(
        (
            v.balances.pending,
            v.balances.cod_net_profit,
            v.balances.cashback,
            v.balances.service_fees
        ),
        (Money(100_308), Money(100_308), Money(3_500), Money(3_192))
    );
    assert_eq!(
        v.orders
            .get(order_id(1))
            .unwrap()
            .cod_figures
            .as_ref()
            .unwrap()
            .net_profit,
        Money(100_308)
    );

    // Komship: beginning balance 1,000,000, withdrawal 700,000, current 300,000.
    w.ok(Command::WalletEntry(WalletEntry::SettleCod {
        order_ids: vec![order_id(1)],
    }))
    .await;
    w.ok(Command::WalletEntry(WalletEntry::TopUp {
        amount: Money(1_000_000 - 100_308),
        note: String::new(),
    }))
    .await;
    let request = RequestWithdrawal {
        withdrawal_id: Uuid::from_u128(44),
        amount: Money(700_000),
        bank_name: "BCA".into(),
        bank_account_no: "981238787".into(),
        bank_account_name: "Tatausahaku".into(),
        note: String::new(),
    };
    w.ok(Command::RequestWithdrawal(request)).await;
    let (_, v) = view(&w).await;
    assert_eq!(
        (
            v.balances.pending,
            v.balances.available,
            v.balances.withdrawing
        ),
        (Money(0), Money(300_000), Money(700_000))
    );
    // The page is marks in memory; its entries are made from the wallet
    // stream's events, as the API reads them.
    let (p, _) = view(&w).await;
    let marks = v.balances.ledger_page(None, None, None, 10);
    assert_eq!(
        marks[0].available_after,
        Money(300_000),
        "newest first, with the balance after"
    );
    assert_eq!(marks.len(), 4);
    let stream = kedai_engine::domain::ids::streams::wallet(w.shop);
    let events = w.engine.store().read_stream(&stream, 1, 100).await.unwrap();
    let entries: Vec<_> = marks
        .iter()
        .map(|m| {
            let e = &events[(m.version - 1) as usize];
            kedai_projections::balances::entry(m, e).unwrap()
        })
        .collect();
    assert_eq!(
        (
            entries[0].available,
            entries[0].withdrawing,
            entries[0].available_after
        ),
        (Money(-700_000), Money(700_000), Money(300_000))
    );
    // The same entries as the fold of the whole wallet stream, newest
    // first.
    let mut all = kedai_projections::balances::ledger(&events, p.position).unwrap();
    all.reverse();
    assert_eq!(entries, all);
    // Nothing past the position asked for.
    assert_eq!(
        kedai_projections::balances::ledger(&events, marks[1].position)
            .unwrap()
            .len(),
        3
    );
    // An event that is not the mark's is refused, not shown.
    assert!(kedai_projections::balances::entry(marks[0], &events[0]).is_err());
    let listed = v.balances.withdrawals_list(None);
    assert_eq!(
        (listed[0].beginning_balance, listed[0].amount),
        (Money(1_000_000), Money(700_000))
    );
}

#[tokio::test]
async fn stock_history_reads_like_ngorder() {
    let w = World::on_at(Arc::new(MemoryStore::new()), true, wib("2021-08-01", 9)).await;
    w.run_at(
        wib("2021-08-09", 10),
        Command::MoveStock(kedai_engine::domain::stock::StockMove::Receive {
            sku: sku("KAOS-M"),
            warehouse_id: MALANG,
            quantity: 5,
            note: String::new(),
        }),
    )
    .await
    .unwrap();
    w.run_at(
        wib("2021-08-10", 10),
        Command::PlaceOrder(place(order_id(1), vec![line("KAOS-M", 2)])),
    )
    .await
    .unwrap();
    w.run_at(
        wib("2021-08-10", 12),
        Command::TransitionOrder {
            order_id: order_id(1),
            transition: Transition::Ship { awb: "X1".into() },
        },
    )
    .await
    .unwrap();
    let (_, v) = view(&w).await;
    // The history is marks in memory; its lines are made from the item's
    // stock stream, as the API reads them.
    let stream = kedai_engine::domain::ids::streams::stock(w.shop, &sku("KAOS-M"), MALANG);
    let events = w.engine.store().read_stream(&stream, 1, 100).await.unwrap();
    let refs = v.stock.history_of(&sku("KAOS-M"), Some(MALANG), None, None);
    let history: Vec<_> = refs
        .iter()
        .map(|r| {
            let e = &events[(r.mark.version - 1) as usize];
            kedai_projections::stock::line(&v.meta, &sku("KAOS-M"), r, e).unwrap()
        })
        .collect();
    assert_eq!(
        history,
        kedai_projections::stock::history(&v.meta, &events, u64::MAX).unwrap(),
        "the marks' lines are the fold of the stream"
    );
    // An event that is not the mark's, or not a move, is refused.
    assert!(kedai_projections::stock::line(&v.meta, &sku("KAOS-M"), &refs[1], &events[0]).is_err());
    let reserved = events
        .iter()
        .find(|e| &*e.event_type == "StockReserved")
        .unwrap();
    let mut at_reservation = refs[1];
    (at_reservation.mark.position, at_reservation.mark.version) =
        (reserved.position, reserved.version);
    assert!(
        kedai_projections::stock::line(&v.meta, &sku("KAOS-M"), &at_reservation, reserved).is_err()
    );
    let first = &history[0];
    assert_eq!(
        (
            &*first.description,
            first.quantity_in,
            first.quantity_out,
            first.last
        ),
        ("Initial variation stock on 2021-08-09", 5, 0, 5)
    );
    assert_eq!(&*first.user, "ayu");
    let shipped = &history[1];
    assert_eq!(
        (
            shipped.quantity_in,
            shipped.quantity_out,
            shipped.last,
            shipped.order_id
        ),
        (0, 2, 3, Some(order_id(1)))
    );
    assert_eq!(history.len(), 2, "a reservation moves no goods");
    let only_first_day = v.stock.history_of(
        &sku("KAOS-M"),
        None,
        Some(wib("2021-08-09", 0)),
        Some(wib("2021-08-10", 0)),
    );
    assert_eq!(only_first_day.len(), 1);
    assert_eq!(v.stock.total(&sku("KAOS-M")).on_hand, 3);
    let low: Vec<String> = v
        .stock
        .low_stock(5)
        .iter()
        .map(|(s, _, _)| s.to_string())
        .collect();
    assert_eq!(low, ["KAOS-M"]);
}

#[tokio::test]
async fn order_lists_filter_page_and_count() {
    let w = world().await;
    w.receive("KAOS-M", MALANG, 100).await;
    w.receive("KAOS-L", MALANG, 100).await;
    for n in 0..25u128 {
        let mut cmd = place(
            order_id(n),
            vec![line(if n % 2 == 0 { "KAOS-M" } else { "KAOS-L" }, 1)],
        );
        cmd.channel = if n % 3 == 0 {
            Channel::Shopee
        } else {
            Channel::Whatsapp
        };
        cmd.sender_id = if n % 5 == 0 { SITI } else { BUDI };
        w.ok(Command::PlaceOrder(cmd)).await;
    }
    for n in 0..5u128 {
        w.transition(
            order_id(n),
            Transition::Ship {
                awb: format!("JNE{n:04}"),
            },
        )
        .await
        .unwrap();
    }
    w.transition(
        order_id(7),
        Transition::Cancel {
            reason: String::new(),
        },
    )
    .await
    .unwrap();
    w.pay(order_id(8), 1_000, 1).await.unwrap();
    let (_, v) = view(&w).await;
    let counts = v.orders.counts();
    assert_eq!(counts.values().sum::<usize>(), 25);
    assert_eq!(
        (
            counts[&OrderStatus::Shipped],
            counts[&OrderStatus::Cancelled],
            counts[&OrderStatus::Placed]
        ),
        (5, 1, 19)
    );
    // Paging newest first visits every order once, in order.
    let mut seen = Vec::new();
    let mut q = OrderQuery {
        limit: 10,
        ..OrderQuery::default()
    };
    loop {
        let page = v.orders.list(&q);
        seen.extend(page.orders.iter().map(|o| o.order_id));
        match page.next {
            Some(next) => q.after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, (0..25u128).rev().map(order_id).collect::<Vec<_>>());
    let list = |q: OrderQuery| {
        v.orders
            .list(&OrderQuery { limit: 100, ..q })
            .orders
            .iter()
            .map(|o| o.order_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        list(OrderQuery {
            status: Some(OrderStatus::Shipped),
            sort: Sort::Oldest,
            ..Default::default()
        }),
        (0..5u128).map(order_id).collect::<Vec<_>>()
    );
    assert_eq!(
        list(OrderQuery {
            channel: Some(Channel::Shopee),
            ..Default::default()
        })
        .len(),
        9
    );
    assert_eq!(
        list(OrderQuery {
            awb: Some("JNE0003".into()),
            ..Default::default()
        }),
        [order_id(3)]
    );
    assert_eq!(
        list(OrderQuery {
            text: Some("siti".into()),
            ..Default::default()
        })
        .len(),
        5,
        "by customer name"
    );
    assert_eq!(
        list(OrderQuery {
            text: Some("kaos-l".into()),
            ..Default::default()
        })
        .len(),
        12,
        "by SKU"
    );
    assert_eq!(
        list(OrderQuery {
            customer_id: Some(SITI),
            ..Default::default()
        })
        .len(),
        5
    );
    assert_eq!(
        list(OrderQuery {
            payment_status: Some(PaymentStatus::PartiallyPaid),
            ..Default::default()
        }),
        [order_id(8)]
    );
    // The timeline comes from the order's stream, as the API reads it.
    let (p, _) = view(&w).await;
    let stream = kedai_engine::domain::ids::streams::order(w.shop, order_id(3));
    let events = w.engine.store().read_stream(&stream, 1, 100).await.unwrap();
    let timeline = kedai_projections::orders::timeline(&events, p.position).unwrap();
    assert_eq!(
        timeline.iter().map(|t| &*t.what).collect::<Vec<_>>(),
        ["placed", "shipped, AWB JNE0003"]
    );
    assert!(timeline.windows(2).all(|t| t[0].position < t[1].position));
    // Nothing past the position asked for.
    let first = timeline[0].position;
    assert_eq!(
        kedai_projections::orders::timeline(&events, first)
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn sales_report_by_day_and_month_with_cancellations_and_expenses() {
    let w = world().await;
    price(&w, 50_000).await;
    w.receive("KAOS-M", MALANG, 100).await;
    for (n, day) in [
        (1u128, "2024-12-11"),
        (2, "2024-12-12"),
        (3, "2024-12-12"),
        (4, "2025-01-02"),
    ] {
        w.run_at(
            wib(day, 20),
            Command::PlaceOrder(place(order_id(n), vec![line("KAOS-M", 2)])),
        )
        .await
        .unwrap();
    }
    w.run_at(
        wib("2024-12-13", 9),
        Command::TransitionOrder {
            order_id: order_id(3),
            transition: Transition::Cancel {
                reason: String::new(),
            },
        },
    )
    .await
    .unwrap();
    let expense = RecordExpense {
        expense_id: Uuid::from_u128(1),
        title: "Iklan".into(),
        amount: Money(30_000),
        quantity: 1,
        date: NaiveDate::from_ymd_opt(2024, 12, 12).unwrap(),
        note: String::new(),
    };
    w.ok(Command::RecordExpense(expense)).await;
    // A day with a new conversation and no sales: no row of zeros.
    let lead = received("6281234567890", 0x5a, "Kak, ready?");
    w.run_at(wib("2024-12-20", 10), lead).await.unwrap();
    let (_, v) = view(&w).await;
    let report = v
        .analytics
        .sales(date("2024-12-01"), date("2025-01-31"), Granularity::Day);
    let rows: Vec<(String, i64, i64, i64)> = report
        .rows
        .iter()
        .map(|r| {
            (
                r.period.unwrap().to_string(),
                r.orders,
                r.net_sales.0,
                r.net_profit.0,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("2024-12-11".into(), 1, 100_000, 100_000 - 60_000),
            ("2024-12-12".into(), 1, 100_000, 100_000 - 60_000 - 30_000),
            ("2025-01-02".into(), 1, 100_000, 40_000),
        ],
        "the cancelled order is off its day; costs are 2 x 30,000"
    );
    let monthly = v
        .analytics
        .sales(date("2024-12-01"), date("2025-01-31"), Granularity::Month);
    assert_eq!(monthly.rows.len(), 2);
    assert_eq!(
        (
            monthly.total.orders,
            monthly.total.gross_profit.0,
            monthly.total.expenses.0
        ),
        (3, 120_000, 30_000)
    );
    assert_eq!(monthly.total.shipping, Money(30_000));
    let best = v.analytics.best(
        date("2024-12-01"),
        date("2025-01-31"),
        Group::Sku,
        RankBy::Quantity,
        5,
    );
    assert_eq!((best[0].key.as_str(), best[0].quantity), ("KAOS-M", 6));
    let week = v.analytics.weekdays(date("2024-12-01"), date("2025-01-31"));
    assert_eq!(week.iter().map(|t| t.orders).sum::<i64>(), 3);
}

/// An order counts once for a product, SKU or category in the rankings,
/// however many of its lines sold it; quantities and revenue add up over
/// the lines. Best customers are the senders (a reseller's order is the
/// reseller's, whoever receives it).
#[tokio::test]
async fn a_ranking_counts_an_order_once_per_product_and_category() {
    let w = world().await;
    w.receive("KAOS-M", MALANG, 10).await;
    w.receive("KAOS-L", MALANG, 10).await;
    w.ok(Command::PlaceOrder(place(
        order_id(1),
        vec![line("KAOS-M", 2), line("KAOS-L", 1), line("BATIK-1", 1)],
    )))
    .await;
    w.ok(Command::PlaceOrder(place(
        order_id(2),
        vec![line("KAOS-M", 1)],
    )))
    .await;
    let (_, v) = view(&w).await;
    let today = v.meta.local_date(w.now);
    let rank = |group| {
        v.analytics
            .best(today, today, group, RankBy::Quantity, 10)
            .into_iter()
            .map(|r| (r.key, r.orders, r.quantity))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        rank(Group::Product),
        [
            ("Kaos Polos".to_owned(), 2, 4),
            ("Batik Tulis".to_owned(), 1, 1)
        ],
        "the first order sold two sizes of one product: one order"
    );
    assert_eq!(
        rank(Group::Category),
        [("Pakaian".to_owned(), 2, 5)],
        "three lines of one category in the first order"
    );
    assert_eq!(
        rank(Group::Sku),
        [
            ("KAOS-M".to_owned(), 2, 3),
            ("BATIK-1".to_owned(), 1, 1),
            ("KAOS-L".to_owned(), 1, 1)
        ]
    );
    let mut dropship = place(order_id(3), vec![line("KAOS-M", 1)]);
    (dropship.sender_id, dropship.receiver_id) = (RESELLER, Some(SITI));
    w.ok(Command::PlaceOrder(dropship)).await;
    let (_, v) = view(&w).await;
    let customers: Vec<(String, i64, i64)> = v
        .analytics
        .best(today, today, Group::Customer, RankBy::Quantity, 10)
        .into_iter()
        .map(|r| (r.name, r.orders, r.quantity))
        .collect();
    assert_eq!(
        customers,
        [("Budi".to_owned(), 2, 5), ("Toko Sinar".to_owned(), 1, 1)],
        "the reseller who sent the order is the customer, not its buyer"
    );
    let (cod, non_cod) = v.analytics.cod_split(today, today);
    assert_eq!(
        (cod.orders + non_cod.orders, cod.quantity + non_cod.quantity),
        (3, 6),
        "COD and the rest count the items sold too"
    );
}

/// Appends `event` as a log written by another tool could hold it.
async fn append_event(w: &World, stream: kedai_engine::StreamId, n: u128, event: DomainEvent) {
    append_raw(
        &**w.engine.store(),
        stream,
        n,
        event.event_type(),
        event.encode(),
    )
    .await;
}

/// Money summed over many events (a day's expenses) is held at the ends of
/// `i64` instead of stopping the fold: a log may hold what a command
/// would refuse today (it was written before the check, or by another
/// tool), and the projections must still fold every event after it.
#[tokio::test]
async fn sums_past_the_largest_amount_saturate_and_the_fold_goes_on() {
    let w = world().await;
    let day = NaiveDate::from_ymd_opt(2024, 12, 12).unwrap();
    let expenses = [
        (1u128, day, 5_000_000_000_000_000_000i64),
        (2, day, 5_000_000_000_000_000_000),
        (3, day.succ_opt().unwrap(), 1_000),
    ];
    for (id, date, total) in expenses {
        let expense_id = Uuid::from_u128(id);
        let event = DomainEvent::from(ExpenseRecorded {
            expense_id,
            title: "Iklan".into(),
            amount: Money(total),
            quantity: 1,
            total: Money(total),
            date,
            note: String::new(),
        });
        append_event(&w, streams::expense(w.shop, expense_id), id, event).await;
    }
    let (_, v) = view(&w).await;
    let report = v
        .analytics
        .sales(day, day.succ_opt().unwrap(), Granularity::Day);
    let expenses: Vec<i64> = report.rows.iter().map(|r| r.expenses.0).collect();
    assert_eq!(
        expenses,
        [i64::MAX, 1_000],
        "the next day's expense is there"
    );
    assert_eq!(report.total.expenses, Money(i64::MAX));
    assert_eq!(report.total.net_profit, Money(-i64::MAX));
}

/// Events at the ends of what their types hold (quantities and moments of
/// `i64::MIN` and `i64::MAX`, a ledger transaction with two postings on one
/// account) fold without a panic, and the views answer, their sums held at
/// the ends of `i64`; this test runs with overflow checks on, as debug
/// builds do.
#[tokio::test]
async fn events_at_the_ends_of_their_types_fold_and_the_views_answer() {
    use kedai_engine::domain::chat::{ChatChannel, conversation_id};
    use kedai_engine::domain::events::LedgerTransactionRecorded;
    use kedai_engine::domain::events::{
        ConversationResolved, ConversationStarted, MessageReceived, MessageSent, StockCounted,
        StockReceived, StockRemoved,
    };
    use kedai_engine::domain::stock::RemovalReason;
    use kedai_engine::domain::wallet::{Account, EntryKind, LedgerTransaction, Posting};
    let w = world().await;
    let sku = sku("KAOS-M");
    let stock = streams::stock(w.shop, &sku, MALANG);
    let received = |quantity| {
        DomainEvent::from(StockReceived {
            sku: sku.clone(),
            warehouse_id: MALANG,
            quantity,
            note: String::new(),
        })
    };
    append_event(&w, stock.clone(), 1, received(i64::MAX)).await;
    append_event(&w, stock.clone(), 2, received(i64::MAX)).await;
    let removed = DomainEvent::from(StockRemoved {
        sku: sku.clone(),
        warehouse_id: MALANG,
        quantity: i64::MIN,
        reason: RemovalReason::Damaged,
        note: String::new(),
    });
    append_event(&w, stock.clone(), 3, removed).await;
    let counted = DomainEvent::from(StockCounted {
        sku: sku.clone(),
        warehouse_id: MALANG,
        counted: 0,
        delta: i64::MIN,
        note: String::new(),
    });
    append_event(&w, stock.clone(), 4, counted).await;
    let conversation = conversation_id(w.shop, ChatChannel::Whatsapp, "6281111111111");
    let chat = streams::conversation(w.shop, conversation);
    let events = [
        DomainEvent::from(ConversationStarted {
            conversation_id: conversation,
            channel: ChatChannel::Whatsapp,
            handle: "6281111111111".into(),
            name: "Rina".into(),
            customer_id: None,
            started_at: Timestamp(i64::MIN),
        }),
        DomainEvent::from(MessageReceived {
            conversation_id: conversation,
            message_id: Uuid::from_u128(1),
            text: "halo".into(),
            attachment: None,
            sent_at: Timestamp(i64::MIN),
        }),
        DomainEvent::from(MessageSent {
            conversation_id: conversation,
            message_id: Uuid::from_u128(2),
            staff_id: "ayu".into(),
            text: "halo kak".into(),
            attachment: None,
            template_id: None,
            sent_at: Timestamp(i64::MAX),
        }),
        DomainEvent::from(ConversationResolved {
            conversation_id: conversation,
            resolved_by: "ayu".into(),
            resolved_at: Timestamp(i64::MAX),
        }),
    ];
    for (n, e) in events.into_iter().enumerate() {
        append_event(&w, chat.clone(), 10 + n as u128, e).await;
    }
    // Two postings on one account (commands write one): their sum held at
    // the end of i64, then a third on top.
    let posting = |amount| Posting {
        account: Account::Available,
        amount: Money(amount),
    };
    let ledger = DomainEvent::from(LedgerTransactionRecorded {
        transaction_id: Uuid::from_u128(0x1ed),
        transaction: LedgerTransaction {
            kind: EntryKind::TopUp,
            postings: vec![posting(i64::MAX), posting(i64::MAX), posting(-5)],
            order_id: None,
            withdrawal_id: None,
            cod: None,
            note: String::new(),
        },
        occurred_at: w.now,
    });
    append_event(&w, streams::wallet(w.shop), 20, ledger.clone()).await;
    let (_, v) = view(&w).await;
    let level = v.stock.levels.get(&sku, MALANG).copied().unwrap();
    // MAX, MAX + MAX held at MAX, minus MIN held at MAX, plus MIN: -1.
    assert_eq!(level.on_hand, -1, "held at the ends, step by step");
    assert_eq!(v.stock.total(&sku).available(), -1);
    assert_eq!(v.balances.available, Money(i64::MAX - 5));
    let (from, to) = (date("1970-01-01"), date("9999-12-31"));
    v.analytics.customer_service(from, to);
    v.analytics.weekdays(from, to);
    v.analytics.sales(from, to, Granularity::Month);
    let listed = v.inbox.list(&InboxQuery {
        limit: 10,
        ..InboxQuery::default()
    });
    assert_eq!(listed.conversations.len(), 1);
}

#[tokio::test]
async fn ngorder_best_location_is_a_share_of_orders() {
    // 19 of 22 orders from one city is 86%.
    let w = world().await;
    w.receive("KAOS-M", MALANG, 100).await;
    let jakarta = CustomerId(Uuid::from_u128(0x99));
    w.ok(Command::RegisterCustomer {
        customer_id: jakarta,
        details: details("Rina", CustomerCategory::Customer, "Jakarta Selatan"),
    })
    .await;
    for n in 0..22u128 {
        let mut cmd = place(order_id(n), vec![line("KAOS-M", 1)]);
        if n >= 19 {
            cmd.sender_id = jakarta;
        }
        w.ok(Command::PlaceOrder(cmd)).await;
    }
    let (_, v) = view(&w).await;
    let today = v.meta.local_date(w.now);
    let shares = v.analytics.locations(today, today, 10);
    assert_eq!(
        (shares[0].key.as_str(), shares[0].orders, shares[0].percent),
        ("Malang", 19, 86)
    );
    assert_eq!(
        (shares[1].key.as_str(), shares[1].percent),
        ("Jakarta Selatan", 14)
    );
    let couriers = v.analytics.couriers(today, today);
    assert_eq!(
        (
            couriers[0].courier.as_str(),
            couriers[0].orders,
            couriers[0].shipping_share_percent
        ),
        ("JNE", 22, 100)
    );
}

fn whatsapp(handle: &str) -> Party {
    Party {
        channel: ChatChannel::Whatsapp,
        handle: handle.into(),
        name: handle.into(),
        customer_id: None,
    }
}

/// A WhatsApp customer writes (message `n`), at the moment it is run.
fn received(handle: &str, n: u128, text: &str) -> Command {
    Command::ReceiveMessage(ReceiveMessage {
        party: whatsapp(handle),
        message_id: Uuid::from_u128(n),
        text: text.into(),
        attachment: None,
        sent_at: None,
    })
}

/// Staff answer a WhatsApp customer (message `n`).
fn replied(handle: &str, n: u128, text: &str) -> Command {
    Command::SendMessage(SendMessage {
        party: whatsapp(handle),
        message_id: Uuid::from_u128(n),
        text: text.into(),
        attachment: None,
    })
}

/// An import of one WhatsApp conversation's history: (message, whether the
/// customer wrote it, when).
fn import_of(handle: &str, messages: &[(u128, bool, Timestamp)]) -> Command {
    use kedai_engine::domain::chat::{
        Author, ImportHistory, ImportedConversation, ImportedMessage,
    };
    let message = |&(n, customer, sent_at): &(u128, bool, Timestamp)| ImportedMessage {
        message_id: Uuid::from_u128(n),
        author: match customer {
            true => Author::Customer,
            false => Author::Staff {
                staff_id: "ayu".into(),
            },
        },
        text: format!("pesan {n}"),
        attachment: None,
        sent_at,
    };
    Command::ImportHistory(ImportHistory {
        channel: ChatChannel::Whatsapp,
        conversations: vec![ImportedConversation {
            party: whatsapp(handle),
            messages: messages.iter().map(message).collect(),
        }],
    })
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

#[tokio::test]
async fn the_inbox_lists_newest_first_with_unread_counts_and_filters() {
    let w = world().await;
    let minutes = |m: i64| Timestamp(w.now.0 + m * 60_000_000);
    for (n, handle) in ["6281111111111", "6282222222222", "6283333333333"]
        .iter()
        .enumerate()
    {
        let cmd = received(handle, n as u128 + 1, "halo kak");
        w.run_at(minutes(n as i64), cmd).await.unwrap();
    }
    let second = conversation_id(w.shop, ChatChannel::Whatsapp, "6282222222222");
    let cmd = received("6282222222222", 10, "kak?");
    w.run_at(minutes(10), cmd).await.unwrap();
    w.run_at(
        minutes(11),
        Command::ChangeConversation {
            conversation_id: second,
            change: ConversationChange::AddLabel {
                label: "belum bayar".into(),
            },
        },
    )
    .await
    .unwrap();
    let reply = replied("6283333333333", 20, "Halo");
    w.run_at(minutes(12), reply).await.unwrap();
    let (_, v) = view(&w).await;
    let page = v.inbox.list(&InboxQuery {
        limit: 10,
        ..InboxQuery::default()
    });
    let handles: Vec<&str> = page.conversations.iter().map(|c| &*c.handle).collect();
    assert_eq!(
        handles,
        ["6283333333333", "6282222222222", "6281111111111"],
        "newest activity first"
    );
    assert_eq!(
        page.conversations
            .iter()
            .map(|c| c.unread)
            .collect::<Vec<_>>(),
        [0, 2, 1]
    );
    let labelled = v.inbox.list(&InboxQuery {
        label: Some("belum bayar".into()),
        limit: 10,
        ..InboxQuery::default()
    });
    assert_eq!(labelled.conversations[0].conversation_id, second);
    let served = v.inbox.list(&InboxQuery {
        status: Some(kedai_engine::domain::chat::ChatStatus::Served),
        limit: 10,
        ..InboxQuery::default()
    });
    assert_eq!(served.conversations.len(), 1);
    // Messages come from the conversation's stream, as the API reads them.
    let (p, _) = view(&w).await;
    let stream = kedai_engine::domain::ids::streams::conversation(w.shop, second);
    let events = w.engine.store().read_stream(&stream, 1, 100).await.unwrap();
    let messages = kedai_projections::inbox::messages(&events, p.position).unwrap();
    assert_eq!(
        kedai_projections::inbox::page(&messages, 0, 10)
            .iter()
            .map(|m| &*m.text)
            .collect::<Vec<_>>(),
        ["halo kak", "kak?"]
    );
    assert_eq!(
        kedai_projections::inbox::page(&messages, 1, 10)
            .iter()
            .map(|m| &*m.text)
            .collect::<Vec<_>>(),
        ["kak?"]
    );
    // Nothing past the position asked for.
    let first = events
        .iter()
        .find(|e| e.event_type.as_ref() == "MessageReceived")
        .unwrap()
        .position;
    assert_eq!(
        kedai_projections::inbox::messages(&events, first)
            .unwrap()
            .len(),
        1
    );
    let first_two = v.inbox.list(&InboxQuery {
        limit: 2,
        ..InboxQuery::default()
    });
    let rest = v.inbox.list(&InboxQuery {
        limit: 2,
        after: first_two.next,
        ..InboxQuery::default()
    });
    assert_eq!(&*rest.conversations[0].handle, "6281111111111");
    let cs = v
        .analytics
        .customer_service(v.meta.local_date(w.now), v.meta.local_date(w.now));
    assert_eq!(
        (cs.leads, cs.response.count, cs.response.median),
        (3, 1, 12 * 60 - 2 * 60)
    );
}

/// The customer service report counts, per status, the conversations last
/// active in its range (days in the shop's time zone), not every one.
#[tokio::test]
async fn conversations_per_status_count_those_active_in_the_range() {
    let w = world().await;
    for (n, handle, day, hour) in [
        (1u128, "6281111111111", "2024-12-11", 23),
        (2, "6282222222222", "2024-12-12", 3),
        (3, "6283333333333", "2024-12-12", 23),
    ] {
        let cmd = received(handle, n, "halo kak");
        w.run_at(wib(day, hour), cmd).await.unwrap();
    }
    let reply = replied("6283333333333", 20, "Halo");
    w.run_at(wib("2024-12-12", 23), reply).await.unwrap();
    let (_, v) = view(&w).await;
    let counts = |from, to| {
        v.inbox
            .counts_between(&v.meta, date(from), date(to))
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| (format!("{s:?}"), n))
            .collect::<Vec<_>>()
    };
    assert_eq!(counts("2024-12-11", "2024-12-11"), [("Unserved".into(), 1)]);
    assert_eq!(
        counts("2024-12-12", "2024-12-12"),
        [("Unserved".into(), 1), ("Served".into(), 1)],
        "03:00 local on the 12th is the 12th, though still the 11th in UTC"
    );
    assert_eq!(counts("2024-12-13", "2024-12-31"), []);
    let all: usize = v
        .inbox
        .counts_between(&v.meta, date("2024-12-01"), date("2024-12-31"))
        .values()
        .sum();
    assert_eq!(all, 3);
}

/// A channel's history brought in by the initial import counts as the
/// conversations it holds: a lead on the day of its first message, its
/// replies as response times, and a customer's last message waiting for
/// the next reply.
#[tokio::test]
async fn imported_history_counts_in_customer_service() {
    let w = world().await;
    let t = |minutes: i64| Timestamp(wib("2024-12-10", 9).0 + minutes * 60_000_000);
    let import = import_of(
        "6281111111111",
        &[(1, true, t(0)), (2, false, t(5)), (3, true, t(10))],
    );
    w.run_at(wib("2024-12-11", 8), import).await.unwrap();
    let reply = replied("6281111111111", 4, "Siap kak");
    w.run_at(wib("2024-12-11", 9), reply).await.unwrap();
    let (_, v) = view(&w).await;
    let day = v
        .analytics
        .customer_service(date("2024-12-10"), date("2024-12-10"));
    assert_eq!(day.leads, 1, "the lead is the first message's day");
    // A response counts on the day its customer wrote: the imported reply
    // after 5 minutes, and the live one to the imported customer message
    // that waited from 09:10 to 09:00 the next day.
    assert_eq!(
        (day.response.count, day.response.average),
        (2, (300 + 85_800) / 2)
    );
    let next = v
        .analytics
        .customer_service(date("2024-12-11"), date("2024-12-11"));
    assert_eq!(
        (next.leads, next.response.count),
        (0, 0),
        "not the import's day"
    );
}

/// An import into a conversation already live may bring older messages:
/// a reply older than the customer's waiting message does not end the
/// wait (it would count a response of 0 seconds and lose the real one).
#[tokio::test]
async fn an_older_imported_reply_does_not_end_a_live_wait() {
    let w = world().await;
    let at = |h: i64, m: i64| Timestamp(wib("2024-12-10", h).0 + m * 60_000_000);
    w.run_at(at(10, 0), received("6281111111111", 1, "kak?"))
        .await
        .unwrap();
    let import = import_of(
        "6281111111111",
        &[(2, true, at(9, 0)), (3, false, at(9, 5))],
    );
    w.run_at(at(10, 10), import).await.unwrap();
    let reply = replied("6281111111111", 4, "Siap kak");
    w.run_at(at(10, 30), reply).await.unwrap();
    let (_, v) = view(&w).await;
    let service = v
        .analytics
        .customer_service(date("2024-12-10"), date("2024-12-10"));
    assert_eq!(
        (service.response.count, service.response.average),
        (1, 1_800)
    );
}

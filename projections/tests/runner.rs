//! The runner and the fold's properties: live projections equal a rebuild
//! from position 0; a rebuild from a snapshot plus the rest equals a
//! rebuild from 0, byte for byte; balances equal the sum of the ledger's
//! postings; stock equals the sum of moves (and the engine's own state);
//! order counts per status add up to the number of orders; the due
//! checkouts and the outbox agree with the engine's own state.

use std::sync::Arc;
use std::time::Duration;

use kedai_engine::command::{Command, CommandError, Executed};
use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::chat::{
    ChatChannel, Delivery, DispatchOutcome, Party, ReceiveMessage, SaveTemplate,
    SendTemplateMessage,
};
use kedai_engine::domain::checkout::{
    CheckoutContent, CheckoutCustomer, CheckoutItem, CheckoutStatus, StartCheckout,
};
use kedai_engine::domain::money::Money;
use kedai_engine::domain::order::Transition;
use kedai_engine::domain::stock::StockMove;
use kedai_engine::domain::wallet::{Account, WalletEntry};
use kedai_engine::store::conformance::read_everything;
use kedai_engine::store::memory::MemoryStore;
use kedai_engine::testkit::*;
use kedai_engine::{EventStore, Timestamp};
use kedai_projections::Projections;
use kedai_projections::runner::{Runner, SnapshotPolicy, load_snapshot, rebuild, write_snapshot};
use proptest::prelude::*;
use tokio::sync::watch;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_follows_the_store_and_readers_wait_for_their_writes() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let w = World::on(store.clone(), true).await;
    let dir = tempfile::tempdir().unwrap();
    let policy = SnapshotPolicy {
        path: dir.path().join("projections.snapshot"),
        every_events: 1,
        every: Duration::ZERO,
    };
    let (runner, handle) = Runner::new(store.clone(), Projections::new(), Some(policy.clone()));
    let (stop_tx, stop) = watch::channel(false);
    let running = tokio::spawn(runner.run(stop));
    w.receive("KAOS-M", MALANG, 10).await;
    let done = w
        .ok(Command::PlaceOrder(place(
            order_id(1),
            vec![line("KAOS-M", 3)],
        )))
        .await;
    handle
        .wait_for(done.position, Duration::from_secs(10))
        .await
        .expect("projections catch up");
    let reserved = handle.read(|p| p.shop(w.shop).unwrap().stock.total(&sku("KAOS-M")).reserved);
    assert_eq!(reserved, 3, "a client reads its own write");
    let lagging = handle
        .wait_for(done.position + 100, Duration::from_millis(50))
        .await;
    assert!(lagging.is_err(), "waiting is bounded");
    assert_eq!(handle.stopped(), None);
    stop_tx.send_replace(true);
    running.await.unwrap().unwrap();
    assert_eq!(handle.stopped(), None, "stopped when asked: not a failure");
    // The last snapshot equals a rebuild from zero.
    let snapshot = load_snapshot(&policy.path)
        .unwrap()
        .expect("a snapshot was written");
    let rebuilt = rebuild(&*store, Projections::new(), None, |_| {})
        .await
        .unwrap();
    assert_eq!(snapshot.position, rebuilt.position);
    assert_eq!(snapshot.to_bytes(), rebuilt.to_bytes());
}

/// An event that does not apply (its payload does not decode as its type)
/// stops the runner, and the handle says why, for the health check: the
/// projections would otherwise just fall behind the log in silence.
#[tokio::test]
async fn a_runner_that_cannot_apply_an_event_says_why() {
    use kedai_engine::domain::ids::streams;
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let w = World::on(store.clone(), true).await;
    let stream = streams::order(w.shop, order_id(9));
    let bad = append_raw(&*store, stream, 1, "OrderPaymentRecorded", vec![0xc1]).await;
    let (runner, handle) = Runner::new(store.clone(), Projections::new(), None);
    let (_stop_tx, stop) = watch::channel(false);
    let stopped = tokio::time::timeout(Duration::from_secs(10), runner.run(stop))
        .await
        .expect("the runner stops by itself");
    assert!(stopped.is_err());
    let why = handle
        .stopped()
        .expect("the handle says the runner stopped");
    assert!(why.contains(&bad.to_string()), "names the position: {why}");
    assert_eq!(handle.position(), bad - 1);
}

#[tokio::test]
async fn a_damaged_snapshot_is_refused_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.snapshot");
    assert!(
        load_snapshot(&path).unwrap().is_none(),
        "no snapshot is not an error"
    );
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let _w = World::on(store.clone(), true).await;
    let p = rebuild(&*store, Projections::new(), None, |_| {})
        .await
        .unwrap();
    write_snapshot(&path, &p).unwrap();
    assert_eq!(load_snapshot(&path).unwrap().unwrap(), p);
    // The state is written straight into the file, the header's length
    // and checksum after it: the file is the header and the state's bytes.
    let mut bytes = std::fs::read(&path).unwrap();
    let payload = p.to_bytes();
    assert_eq!(&bytes[..8], b"KEDAISNP");
    assert_eq!(bytes[10..18], p.position.to_le_bytes());
    assert_eq!(bytes[18..26], (payload.len() as u64).to_le_bytes());
    assert_eq!(bytes[26..30], crc_fast::crc32_iscsi(&payload).to_le_bytes());
    assert!(
        bytes[30..] == payload[..],
        "the payload is the state's bytes"
    );
    let last = bytes.len() - 3;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let refused = |path: &std::path::Path| load_snapshot(path).unwrap_err().to_string();
    assert!(refused(&path).contains("checksum mismatch"));
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    assert!(refused(&path).contains("truncated"));
    std::fs::write(&path, &bytes[..29]).unwrap();
    assert!(refused(&path).contains("not a kedai projection snapshot"));
    std::fs::write(&path, &bytes).unwrap();
    assert_eq!(load_snapshot(&path).unwrap().unwrap(), p);

    // A snapshot that cannot be put in place (here a directory is in the
    // way) is an error, and leaves no temporary file behind.
    let blocked = dir.path().join("blocked.snapshot");
    std::fs::create_dir(&blocked).unwrap();
    std::fs::write(blocked.join("x"), b"x").unwrap();
    assert!(write_snapshot(&blocked, &p).is_err());
    assert!(
        !blocked.with_extension("tmp").exists(),
        "the temporary file is removed"
    );
}

#[derive(Clone, Debug)]
enum Op {
    Receive(i64),
    Place(u128, i64, bool),
    Ship(u128),
    Deliver(u128),
    Cancel(u128),
    Return(u128),
    Pay(u128, i64),
    TopUp(i64),
    Settle(u128),
    Chat(u8, u128),
    Checkout(u128, u8, i64),
    Template(u8, u128),
    Dispatch(u8, u128, bool),
}

const TEMPLATE: Uuid = Uuid::from_u128(0x7e7e);

fn cart(quantity: i64) -> CheckoutContent {
    CheckoutContent {
        items: vec![CheckoutItem {
            sku: sku("KAOS-M"),
            product_name: "Kaos".into(),
            name: "M".into(),
            price: Money(50_000),
            quantity,
        }],
        customer: CheckoutCustomer {
            first_name: "Abu".into(),
            ..CheckoutCustomer::default()
        },
        shipping_address: None,
        shipping: Money(0),
        rate: String::new(),
    }
}

fn phone(h: u8) -> String {
    format!("0812-0000-000{h}")
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (1i64..20).prop_map(Op::Receive),
        4 => (0u128..6, 1i64..4, any::<bool>()).prop_map(|(o, q, c)| Op::Place(o, q, c)),
        2 => (0u128..6).prop_map(Op::Ship),
        2 => (0u128..6).prop_map(Op::Deliver),
        1 => (0u128..6).prop_map(Op::Cancel),
        1 => (0u128..6).prop_map(Op::Return),
        1 => (0u128..6, 1_000i64..80_000).prop_map(|(o, a)| Op::Pay(o, a)),
        1 => (1_000i64..200_000).prop_map(Op::TopUp),
        1 => (0u128..6).prop_map(Op::Settle),
        2 => (0u8..3, 0u128..1_000).prop_map(|(h, m)| Op::Chat(h, m)),
        3 => (0u128..4, 0u8..4, 0i64..180).prop_map(|(c, a, m)| Op::Checkout(c, a, m)),
        2 => (0u8..3, 0u128..6).prop_map(|(h, m)| Op::Template(h, m)),
        2 => (0u8..3, 0u128..6, any::<bool>()).prop_map(|(h, m, s)| Op::Dispatch(h, m, s)),
    ]
}

async fn perform(w: &World, op: &Op, n: u128) -> Result<(), CommandError> {
    let transition = |o: u128, t| w.transition(order_id(o), t);
    let result = match op {
        Op::Receive(q) => {
            w.run(Command::MoveStock(StockMove::Receive {
                sku: sku("KAOS-M"),
                warehouse_id: SURABAYA,
                quantity: *q,
                note: String::new(),
            }))
            .await
        }
        Op::Place(o, q, cod) => {
            let mut cmd = place(order_id(*o), vec![line("KAOS-M", *q), line("TAS-1", 1)]);
            cmd.cod = *cod;
            w.run(Command::PlaceOrder(cmd)).await
        }
        Op::Ship(o) => {
            transition(
                *o,
                Transition::Ship {
                    awb: format!("AWB{o}"),
                },
            )
            .await
        }
        Op::Deliver(o) => transition(*o, Transition::Deliver).await,
        Op::Cancel(o) => {
            transition(
                *o,
                Transition::Cancel {
                    reason: String::new(),
                },
            )
            .await
        }
        Op::Return(o) => match transition(
            *o,
            Transition::StartReturn {
                reason: String::new(),
            },
        )
        .await
        {
            Ok(_) => transition(*o, Transition::ReceiveReturn).await,
            Err(e) => Err(e),
        },
        Op::Pay(o, a) => w.pay(order_id(*o), *a, n).await,
        Op::TopUp(a) => {
            w.run(Command::WalletEntry(WalletEntry::TopUp {
                amount: Money(*a),
                note: String::new(),
            }))
            .await
        }
        Op::Settle(o) => {
            w.run(Command::WalletEntry(WalletEntry::SettleCod {
                order_ids: vec![order_id(*o)],
            }))
            .await
        }
        Op::Chat(h, m) => {
            let party = Party {
                channel: ChatChannel::Whatsapp,
                handle: format!("62812000000{h}"),
                name: String::new(),
                customer_id: None,
            };
            w.run(Command::ReceiveMessage(ReceiveMessage {
                party,
                message_id: Uuid::from_u128(*m),
                text: "halo".into(),
                attachment: None,
                sent_at: None,
            }))
            .await
        }
        Op::Checkout(..) | Op::Template(..) | Op::Dispatch(..) => perform_more(w, op).await,
    };
    match result {
        Ok(_) | Err(CommandError::Rejected(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Checkouts (start, update, abandon when due, complete) at `minute`
/// minutes after the world's time, and templated messages with their
/// dispatch outcomes.
async fn perform_more(w: &World, op: &Op) -> Result<Executed, CommandError> {
    let at = |minute: i64| Timestamp(w.now.0 + minute * 60_000_000);
    match op {
        Op::Checkout(c, action, minute) => {
            let checkout_id = Uuid::from_u128(0xc000 + c);
            let command = match action {
                0 => Command::StartCheckout(StartCheckout {
                    checkout_id,
                    domain: "x.myshoppegram.com".into(),
                    content: cart(1),
                }),
                1 => Command::UpdateCheckout {
                    checkout_id,
                    content: cart(1 + minute % 3),
                },
                2 => Command::AbandonCheckout { checkout_id },
                _ => Command::CompleteCheckout {
                    checkout_id,
                    order: place(order_id(100 + c), vec![line("KAOS-M", 1)]),
                },
            };
            w.run_at(at(*minute), command).await
        }
        Op::Template(h, m) => {
            w.run(Command::SendTemplateMessage(SendTemplateMessage {
                message_id: Uuid::from_u128(0x6000 + m),
                template_id: TEMPLATE,
                phone_number: phone(*h),
                name: String::new(),
                customer_id: None,
                data: [("fullname".to_owned(), format!("Budi {m}"))].into(),
            }))
            .await
        }
        Op::Dispatch(h, m, sent) => {
            let handle = kedai_engine::domain::phone::PhoneNumber::parse(&phone(*h)).unwrap();
            let outcome = if *sent {
                DispatchOutcome::Sent {
                    attempts: 1,
                    gateway_message_id: None,
                }
            } else {
                DispatchOutcome::Failed {
                    attempts: 3,
                    reason: "500".into(),
                }
            };
            w.run(Command::RecordDispatch {
                conversation_id: kedai_engine::domain::chat::conversation_id(
                    w.shop,
                    ChatChannel::Whatsapp,
                    handle.as_str(),
                ),
                message_id: Uuid::from_u128(0x6000 + m),
                outcome,
            })
            .await
        }
        other => unreachable!("perform handles {other:?}"),
    }
}

async fn check(ops: Vec<Op>, snapshot_at: usize) -> Result<(), TestCaseError> {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let w = World::on_at(store.clone(), true, Timestamp(1_733_900_000_000_000)).await;
    w.receive("KAOS-M", MALANG, 10).await;
    let (runner, live) = Runner::new(store.clone(), Projections::new(), None);
    let (stop_tx, stop) = watch::channel(false);
    let running = tokio::spawn(runner.run(stop));
    let mut snapshot = None;
    w.ok(Command::SaveTemplate(SaveTemplate {
        template_id: TEMPLATE,
        name: "Halo".into(),
        body: "Halo {{fullname}}".into(),
    }))
    .await;
    for (i, op) in ops.iter().enumerate() {
        perform(&w, op, i as u128)
            .await
            .map_err(|e| TestCaseError::fail(format!("{op:?}: {e}")))?;
        if i == snapshot_at {
            snapshot = Some(
                rebuild(&*store, Projections::new(), None, |_| {})
                    .await
                    .unwrap()
                    .to_bytes(),
            );
        }
    }
    let end = store.last_position().await.unwrap();
    live.wait_for(end, Duration::from_secs(10))
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    stop_tx.send_replace(true);
    running.await.unwrap().unwrap();

    let from_zero = rebuild(&*store, Projections::new(), None, |_| {})
        .await
        .unwrap();
    let live_bytes = live.read(Projections::to_bytes);
    prop_assert!(
        live_bytes == from_zero.to_bytes(),
        "live projections differ from a rebuild from zero"
    );
    if let Some(bytes) = snapshot {
        let resumed = rebuild(
            &*store,
            Projections::from_bytes(&bytes).unwrap(),
            None,
            |_| {},
        )
        .await
        .unwrap();
        prop_assert!(
            resumed.to_bytes() == from_zero.to_bytes(),
            "snapshot plus the rest differs from a rebuild from zero"
        );
    }

    let view = from_zero.shop(w.shop).unwrap();
    let mut postings = std::collections::BTreeMap::<Account, i64>::new();
    let mut moves = 0i64;
    for e in read_everything(&*store).await {
        match DomainEvent::decode(&e.event_type, &e.payload).unwrap() {
            Some(DomainEvent::LedgerTransactionRecorded(t)) => {
                for p in t.transaction.postings {
                    *postings.entry(p.account).or_default() += p.amount.0;
                }
            }
            Some(DomainEvent::StockReceived(s)) => moves += s.quantity,
            Some(DomainEvent::StockShipped(s)) => moves -= s.quantity,
            Some(DomainEvent::StockRestocked(s)) => moves += s.quantity,
            _ => {}
        }
    }
    let get = |a| Money(postings.get(&a).copied().unwrap_or(0));
    prop_assert_eq!(
        (
            view.balances.pending,
            view.balances.available,
            view.balances.withdrawing
        ),
        (
            get(Account::Pending),
            get(Account::Available),
            get(Account::Withdrawing)
        )
    );
    // The ledger: each mark's entry, made from the wallet stream, is the
    // fold of the stream, and the last balances after are the balances.
    let wallet_stream = kedai_engine::domain::ids::streams::wallet(w.shop);
    let wallet = store.read_stream(&wallet_stream, 1, 100_000).await.unwrap();
    let ledger = kedai_projections::balances::ledger(&wallet, from_zero.position).unwrap();
    prop_assert_eq!(ledger.len(), view.balances.ledger_len());
    for (m, folded) in view.balances.ledger.iter().zip(&ledger) {
        let e = &wallet[(m.version - 1) as usize];
        prop_assert_eq!(&kedai_projections::balances::entry(m, e).unwrap(), folded);
    }
    if let Some(last) = ledger.last() {
        prop_assert_eq!(
            (
                last.pending_after,
                last.available_after,
                last.withdrawing_after
            ),
            (
                view.balances.pending,
                view.balances.available,
                view.balances.withdrawing
            )
        );
    }
    prop_assert_eq!(view.stock.total(&sku("KAOS-M")).on_hand, moves);
    for wh in [MALANG, SURABAYA] {
        let engine = w
            .engine
            .stock_item(w.shop, &sku("KAOS-M"), wh)
            .await
            .unwrap();
        let level = view
            .stock
            .levels
            .get(&sku("KAOS-M"), wh)
            .copied()
            .unwrap_or_default();
        prop_assert_eq!(
            (level.on_hand, level.reserved),
            (engine.on_hand, engine.reserved)
        );
        // The item's history: each mark's line, made from the stock
        // stream, is the fold of the stream, and the last line's quantity
        // on hand is the level's.
        let stock_stream = kedai_engine::domain::ids::streams::stock(w.shop, &sku("KAOS-M"), wh);
        let moves = store.read_stream(&stock_stream, 1, 100_000).await.unwrap();
        let history =
            kedai_projections::stock::history(&view.meta, &moves, from_zero.position).unwrap();
        prop_assert_eq!(history.len(), view.stock.history_len(&sku("KAOS-M"), wh));
        let refs = view.stock.history_of(&sku("KAOS-M"), Some(wh), None, None);
        prop_assert_eq!(refs.len(), history.len());
        for (r, folded) in refs.iter().zip(&history) {
            let e = &moves[(r.mark.version - 1) as usize];
            prop_assert_eq!(
                &kedai_projections::stock::line(&view.meta, &sku("KAOS-M"), r, e).unwrap(),
                folded
            );
        }
        prop_assert_eq!(history.last().map_or(0, |l| l.last), level.on_hand);
    }
    prop_assert_eq!(
        view.orders.counts().values().sum::<usize>(),
        view.orders.len()
    );
    // Checkouts: the projection's status is the engine's, and what it
    // says is due is what the engine would abandon.
    let late = Timestamp(w.now.0 + 240 * 60_000_000);
    let due: Vec<Uuid> = from_zero
        .due_checkouts(late, 100)
        .into_iter()
        .map(|d| d.checkout_id)
        .collect();
    for c in 0..4u128 {
        let id = Uuid::from_u128(0xc000 + c);
        let engine = w.checkout(id).await;
        prop_assert_eq!(view.checkouts.get(id).map(|v| v.status), engine.status);
        prop_assert_eq!(
            due.contains(&id),
            engine.status == Some(CheckoutStatus::Open)
        );
    }
    // The outbox: exactly the messages the engine has as queued.
    let queued: Vec<Uuid> = from_zero
        .outbox(100)
        .into_iter()
        .map(|(_, e)| e.message_id)
        .collect();
    let mut engine_queued = Vec::new();
    for h in 0..3u8 {
        let handle = kedai_engine::domain::phone::PhoneNumber::parse(&phone(h)).unwrap();
        let id = kedai_engine::domain::chat::conversation_id(
            w.shop,
            ChatChannel::Whatsapp,
            handle.as_str(),
        );
        for (m, d) in w.conversation(id).await.outbox {
            if d == Delivery::Queued {
                engine_queued.push(m);
            }
        }
        // Messages are read from the conversation's stream: their delivery
        // is the engine's, and the last one is the one the inbox lists.
        let stream = kedai_engine::domain::ids::streams::conversation(w.shop, id);
        let events = store.read_stream(&stream, 1, 10_000).await.unwrap();
        let messages = kedai_projections::inbox::messages(&events, from_zero.position).unwrap();
        for m in &messages {
            let engine_state = w.conversation(id).await.outbox.get(&m.message_id).copied();
            prop_assert_eq!(m.delivery.as_ref().map(|d| d.status), engine_state);
        }
        let listed = view.inbox.get(id);
        prop_assert_eq!(listed.map_or(0, |c| c.messages as usize), messages.len());
        prop_assert_eq!(
            listed.and_then(|c| c.last_message.as_ref()),
            messages.last()
        );
    }
    let mut sorted = queued.clone();
    sorted.sort();
    engine_queued.sort();
    prop_assert_eq!(sorted, engine_queued);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn projections_are_the_fold_of_the_log(ops in prop::collection::vec(op(), 1..35), cut in 0usize..35) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(check(ops, cut))?;
    }
}

//! The fold on several threads gives what the fold on one thread gives,
//! byte for byte: for every number of threads, every page size, to the end
//! of the log or as of any moment; and a damaged record stops it with the
//! earliest error, naming the position.

use std::sync::OnceLock;

use kedai_engine::domain::DomainEvent;
use kedai_engine::store::conformance::read_everything;
use kedai_engine::store::import::RecordPage;
use kedai_engine::store::log::format::{self, Envelope, GENESIS_HASH};
use kedai_engine::{Position, RecordedEvent, Timestamp};
use kedai_fixtures::{FixtureConfig, generate_in_memory};
use kedai_projections::Projections;
use kedai_projections::fold::{FoldError, ParallelFold};
use kedai_projections::inbox::InboxQuery;
use kedai_projections::placed::PlacedRef;
use proptest::prelude::*;

/// Three shops' year of trade, every kind of event, interleaved in the log.
fn log() -> &'static [RecordedEvent] {
    static LOG: OnceLock<Vec<RecordedEvent>> = OnceLock::new();
    LOG.get_or_init(|| {
        generated(FixtureConfig {
            shops: 3,
            orders_per_shop: 150,
            days: 30,
            ..FixtureConfig::default()
        })
    })
}

/// Twelve shops, a little trade each: more shops than a share finds by
/// comparing ids, so the rest are found in its map.
fn many_shops_log() -> &'static [RecordedEvent] {
    static LOG: OnceLock<Vec<RecordedEvent>> = OnceLock::new();
    LOG.get_or_init(|| {
        generated(FixtureConfig {
            shops: 12,
            orders_per_shop: 15,
            days: 5,
            ..FixtureConfig::default()
        })
    })
}

fn generated(config: FixtureConfig) -> Vec<RecordedEvent> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = generate_in_memory(&config).await.unwrap();
        read_everything(&*store).await
    })
}

/// The first shop's events alone, numbered as a log of their own: one
/// shop holds every record (the fold then decodes and applies on separate
/// threads).
fn one_shop_log() -> &'static [RecordedEvent] {
    static LOG: OnceLock<Vec<RecordedEvent>> = OnceLock::new();
    LOG.get_or_init(|| {
        let shop = log()[0].stream.shop;
        log()
            .iter()
            .filter(|e| e.stream.shop == shop)
            .enumerate()
            .map(|(i, e)| RecordedEvent {
                position: i as Position + 1,
                ..e.clone()
            })
            .collect()
    })
}

/// The events as a log stores them, in pages of `size`.
fn pages(events: &[RecordedEvent], size: usize) -> Vec<RecordPage> {
    events
        .chunks(size)
        .map(|chunk| {
            let mut page = RecordPage::new(chunk[0].position);
            for e in chunk {
                let mut body = Vec::new();
                format::encode_body(&mut body, &GENESIS_HASH, e.position, &Envelope::of(e));
                page.push(&body);
            }
            page
        })
        .collect()
}

fn sequential(events: &[RecordedEvent]) -> Projections {
    let mut p = Projections::new();
    for e in events {
        p.apply(e).unwrap();
    }
    p
}

fn parallel(
    events: &[RecordedEvent],
    threads: usize,
    page: usize,
    until: Option<Timestamp>,
) -> Result<kedai_projections::fold::Folded, FoldError> {
    let mut fold = ParallelFold::start(threads, until);
    for p in pages(events, page) {
        fold.push(p);
    }
    fold.finish()
}

#[test]
fn the_log_has_several_shops_interleaved() {
    let shops: std::collections::BTreeSet<_> = log().iter().map(|e| e.stream.shop).collect();
    assert_eq!(shops.len(), 3);
    assert!(log().len() > 5_000, "{} events", log().len());
}

/// Every shop's conversations, newest activity first, as the inbox lists
/// them page by page: an index the byte form leaves out, which a rebuild
/// makes once at its end.
fn newest_first(p: &Projections) -> Vec<Vec<(Timestamp, uuid::Uuid)>> {
    p.shops
        .values()
        .map(|v| {
            let mut all = Vec::new();
            let mut q = InboxQuery {
                limit: 7,
                ..InboxQuery::default()
            };
            loop {
                let page = v.inbox.list(&q);
                all.extend(
                    page.conversations
                        .iter()
                        .map(|c| (c.last_activity, c.conversation_id)),
                );
                match page.next {
                    Some(next) => q.after = Some(next),
                    None => break all,
                }
            }
        })
        .collect()
}

/// Every shop's checkouts newest first, and the open ones due first: the
/// checkouts' indexes, which the byte form also leaves out.
fn checkout_orders(p: &Projections) -> Vec<(Vec<uuid::Uuid>, Vec<uuid::Uuid>)> {
    let far = Timestamp(i64::MAX / 2);
    p.shops
        .values()
        .map(|v| {
            let (mut newest, mut after) = (Vec::new(), None);
            loop {
                let (page, next) = v.checkouts.list(None, after, 7);
                newest.extend(page.iter().map(|c| c.checkout_id));
                match next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            (newest, v.checkouts.due(60, far, usize::MAX))
        })
        .collect()
}

#[test]
fn every_number_of_threads_folds_the_same_bytes() {
    let many: std::collections::BTreeSet<_> =
        many_shops_log().iter().map(|e| e.stream.shop).collect();
    assert_eq!(many.len(), 12);
    for events in [log(), one_shop_log(), many_shops_log()] {
        let expected = sequential(events);
        let last_at = events.last().unwrap().recorded_at;
        for threads in 1..=4 {
            let folded = parallel(events, threads, 1_000, None).unwrap();
            assert_eq!(folded.projections.position, events.len() as Position);
            assert_eq!(folded.last_recorded_at, Some(last_at));
            assert!(
                folded.projections.to_bytes() == expected.to_bytes(),
                "{threads} threads fold other projections ({} events)",
                events.len()
            );
            assert_eq!(
                newest_first(&folded.projections),
                newest_first(&expected),
                "{threads} threads list the conversations otherwise"
            );
            assert_eq!(
                checkout_orders(&folded.projections),
                checkout_orders(&expected),
                "{threads} threads list the checkouts otherwise"
            );
        }
    }
}

/// A log written before payloads were positional holds them with their
/// field names, and one that such a build started and this one went on
/// with holds both: each folds to the same projections as the positional
/// log, on any number of threads.
#[test]
fn a_log_with_named_payloads_folds_as_the_positional_one() {
    let positional = log();
    // Every payload with names, or only those before the middle.
    let named = |until: usize| -> Vec<RecordedEvent> {
        positional
            .iter()
            .enumerate()
            .map(|(i, e)| {
                if i >= until {
                    return e.clone();
                }
                let event = DomainEvent::decode(&e.event_type, &e.payload)
                    .unwrap()
                    .expect("a type this build knows");
                RecordedEvent {
                    payload: rmp_serde::to_vec_named(&event).unwrap(),
                    ..e.clone()
                }
            })
            .collect()
    };
    let bytes = |events: &[RecordedEvent]| events.iter().map(|e| e.payload.len()).sum::<usize>();
    let expected = sequential(positional).to_bytes();
    for until in [positional.len(), positional.len() / 2] {
        let events = named(until);
        assert!(
            bytes(&events) > bytes(positional) * 5 / 4,
            "{} bytes of payloads with names, {} positional",
            bytes(&events),
            bytes(positional)
        );
        assert!(sequential(&events).to_bytes() == expected, "event by event");
        for threads in 1..=3 {
            let folded = parallel(&events, threads, 1_000, None).unwrap();
            assert!(
                folded.projections.to_bytes() == expected,
                "{threads} threads, names until {until}"
            );
        }
    }
}

/// The fold reads orders placed with their texts borrowed; decoding on
/// one thread and applying on another sends them owned (`one_shop_log`
/// on 2 threads, above). Both readings agree on every order of the log.
#[test]
fn every_order_placed_reads_the_same_borrowed_and_owned() {
    let mut placed = 0;
    for e in log().iter().filter(|e| &*e.event_type == "OrderPlaced") {
        let Some(DomainEvent::OrderPlaced(owned)) =
            DomainEvent::decode(&e.event_type, &e.payload).unwrap()
        else {
            panic!("an OrderPlaced payload decodes as one");
        };
        let borrowed = PlacedRef::decode(&e.payload).unwrap();
        assert_eq!(borrowed, PlacedRef::from(&*owned));
        assert_eq!(borrowed.sender.to_snapshot(), owned.sender);
        assert_eq!(borrowed.receiver.to_snapshot(), owned.receiver);
        placed += 1;
    }
    assert!(placed > 400, "{placed} orders placed");
}

#[test]
fn a_damaged_record_stops_the_fold_at_the_earliest_error() {
    let events = log();
    let mut pages = pages(events, 500);
    // Damage the envelope of two records (as if a record passed its
    // checksum but was written by something else): the earlier is named.
    let damaged = |page: &RecordPage, n: usize| {
        let mut out = RecordPage::new(page.bodies().next().unwrap().0);
        for (i, (_, body)) in page.bodies().enumerate() {
            let mut body = body.to_vec();
            if i == n {
                body.truncate(format::BODY_PREFIX_LEN + 25);
            }
            out.push(&body);
        }
        out
    };
    pages[3] = damaged(&pages[3], 7);
    pages[5] = damaged(&pages[5], 1);
    for threads in 1..=4 {
        let mut fold = ParallelFold::start(threads, None);
        for p in &pages {
            fold.push(damaged(p, usize::MAX));
        }
        let err = fold.finish().unwrap_err();
        assert!(
            matches!(err, FoldError::Record { position, .. } if position == 3 * 500 + 8),
            "{threads} threads: {err}"
        );
    }
}

/// A fold reads a record's actor and event type as bytes and checks as
/// UTF-8 only those it has not met: one that is not UTF-8 (as if a record
/// passed its checksum but was written by something else) stops the fold
/// with its record named.
#[test]
fn an_actor_or_event_type_that_is_not_utf8_stops_the_fold_at_its_record() {
    let events = log();
    for (what, at) in [
        ("actor", events.len() / 3),
        ("event type", events.len() / 2),
    ] {
        let e = &events[at];
        let text = match what {
            "actor" => e.actor.id.as_str(),
            _ => &*e.event_type,
        };
        for threads in 1..=4 {
            let mut fold = ParallelFold::start(threads, None);
            for (n, page) in pages(events, 500).into_iter().enumerate() {
                fold.push(match n == at / 500 {
                    true => not_utf8(&page, at % 500, text),
                    false => page,
                });
            }
            let err = fold.finish().unwrap_err();
            let named = match &err {
                FoldError::Record { position, reason } => {
                    *position == e.position && reason.contains("UTF-8")
                }
                FoldError::Apply(a) => a.position == e.position && a.to_string().contains("UTF-8"),
                _ => false,
            };
            assert!(named, "{what}, {threads} threads: {err}");
        }
    }
}

/// The page with the first byte of `text` in its `index`th record's
/// envelope made one that is never UTF-8. (The first bytes that are
/// `text` after the record's prefix are the field's own: the stream name
/// and the ids before it do not hold an actor's id or a type's name.)
fn not_utf8(page: &RecordPage, index: usize, text: &str) -> RecordPage {
    let mut out = RecordPage::new(page.bodies().next().unwrap().0);
    for (i, (_, body)) in page.bodies().enumerate() {
        let mut body = body.to_vec();
        if i == index {
            let start = format::BODY_PREFIX_LEN
                + body[format::BODY_PREFIX_LEN..]
                    .windows(text.len())
                    .position(|w| w == text.as_bytes())
                    .unwrap();
            body[start] = 0xff;
        }
        out.push(&body);
    }
    out
}

/// A payload that does not decode stops the fold with the earliest such
/// event named, however the threads are used: an order placed is read by
/// the applying thread when one thread decodes and another applies, every
/// other event by the decoding one.
#[test]
fn a_payload_that_does_not_decode_stops_the_fold_at_the_earliest() {
    for events in [log(), one_shop_log()] {
        let find = |kind: &str, after: usize| {
            after
                + events[after..]
                    .iter()
                    .position(|e| &*e.event_type == kind)
                    .unwrap()
        };
        let placed = find("OrderPlaced", events.len() / 4);
        let reserved = find("StockReserved", placed + events.len() / 10);
        let later_placed = find("OrderPlaced", reserved + 1);
        for (first, second) in [(placed, reserved), (reserved, later_placed)] {
            let mut broken = events.to_vec();
            for i in [first, second] {
                broken[i].payload = vec![0x93, 0x01];
            }
            let want = broken[first].position;
            let mut sequential = Projections::new();
            let err = broken
                .iter()
                .find_map(|e| sequential.apply(e).err())
                .unwrap();
            assert_eq!(err.position, want);
            for threads in 1..=4 {
                let err = parallel(&broken, threads, 700, None).unwrap_err();
                assert!(
                    matches!(&err, FoldError::Apply(e) if e.position == want),
                    "{threads} threads, {} events: {err}",
                    events.len()
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// As of any moment (between or at events' times), with any page size
    /// and number of threads: the fold of the prefix recorded by then.
    #[test]
    fn as_of_a_moment_folds_the_prefix(one_shop: bool, at in 0usize..6_000, shift in -1i64..=1, threads in 1usize..=4, page in 1usize..3_000) {
        let events = if one_shop { one_shop_log() } else { log() };
        let at = at.min(events.len() - 1);
        let moment = Timestamp(events[at].recorded_at.0 + shift);
        let prefix: Vec<RecordedEvent> = events
            .iter()
            .take_while(|e| e.recorded_at <= moment)
            .cloned()
            .collect();
        let folded = parallel(events, threads, page, Some(moment)).unwrap();
        prop_assert_eq!(folded.projections.position, prefix.len() as Position);
        prop_assert_eq!(folded.last_recorded_at, prefix.last().map(|e| e.recorded_at));
        prop_assert!(folded.projections.to_bytes() == sequential(&prefix).to_bytes());
    }
}

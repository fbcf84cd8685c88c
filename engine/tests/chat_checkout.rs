//! Given / when / then tests of conversations (statuses, labels,
//! assignment, templates, the initial import) and checkouts (start,
//! update, complete into an order, abandonment).

mod common;

use std::collections::BTreeMap;

use common::*;
use kedai_engine::Timestamp;
use kedai_engine::command::{Command, CommandError};
use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::chat::{
    self, Attachment, Author, ChatChannel, ChatStatus, ConversationChange, Delivery,
    DispatchOutcome, ImportHistory, ImportedConversation, ImportedMessage, Party, ReceiveMessage,
    SaveTemplate, SendMessage, SendTemplateMessage,
};
use kedai_engine::domain::checkout::{
    CheckoutContent, CheckoutCustomer, CheckoutItem, CheckoutStatus, StartCheckout,
};
use kedai_engine::domain::money::Money;
use kedai_engine::domain::order::PaymentStatus;
use kedai_engine::domain::rejection::Rejection;
use proptest::prelude::*;
use uuid::Uuid;

fn party(handle: &str) -> Party {
    Party {
        channel: ChatChannel::Whatsapp,
        handle: handle.into(),
        name: "Siti".into(),
        customer_id: Some(SITI),
    }
}

fn inbound(handle: &str, n: u128, text: &str) -> Command {
    Command::ReceiveMessage(ReceiveMessage {
        party: party(handle),
        message_id: Uuid::from_u128(0x1000 + n),
        text: text.into(),
        attachment: None,
        sent_at: None,
    })
}

fn outbound(handle: &str, n: u128, text: &str) -> Command {
    Command::SendMessage(SendMessage {
        party: party(handle),
        message_id: Uuid::from_u128(0x2000 + n),
        text: text.into(),
        attachment: None,
    })
}

#[tokio::test]
async fn statuses_follow_the_conversation() {
    let w = World::new().await;
    let id = chat::conversation_id(w.shop, ChatChannel::Whatsapp, "6281234567890");
    w.ok(inbound("6281234567890", 1, "Kak, kaos M ready?"))
        .await;
    assert_eq!(w.conversation(id).await.status, Some(ChatStatus::Unserved));
    w.ok(outbound("6281234567890", 1, "Ready kak")).await;
    assert_eq!(w.conversation(id).await.status, Some(ChatStatus::Served));
    w.ok(inbound("6281234567890", 2, "Ok saya order 2")).await;
    assert_eq!(
        w.conversation(id).await.status,
        Some(ChatStatus::Unserved),
        "the customer is waiting again"
    );
    w.ok(Command::ChangeConversation {
        conversation_id: id,
        change: ConversationChange::Assign {
            staff_id: "ayu".into(),
        },
    })
    .await;
    w.ok(outbound("6281234567890", 2, "Siap")).await;
    assert_eq!(w.conversation(id).await.status, Some(ChatStatus::Mine));
    w.ok(Command::ChangeConversation {
        conversation_id: id,
        change: ConversationChange::Resolve,
    })
    .await;
    assert_eq!(w.conversation(id).await.status, Some(ChatStatus::Resolved));
    let reopened = w.ok(inbound("6281234567890", 3, "Kak, resinya?")).await;
    assert!(
        reopened
            .events
            .iter()
            .any(|(_, e)| matches!(e, DomainEvent::ConversationReopened(_)))
    );
    assert_eq!(
        w.conversation(id).await.status,
        Some(ChatStatus::Mine),
        "reopened, still assigned"
    );
    w.ok(Command::ChangeConversation {
        conversation_id: id,
        change: ConversationChange::Unassign,
    })
    .await;
    assert_eq!(w.conversation(id).await.status, Some(ChatStatus::Unserved));
    // The same message twice (a channel retry) is recorded once.
    let repeat = w.ok(inbound("6281234567890", 3, "Kak, resinya?")).await;
    assert!(repeat.events.is_empty());
    assert_eq!(w.conversation(id).await.messages, 5);
}

#[tokio::test]
async fn labels_are_added_and_removed_and_limited() {
    let w = World::new().await;
    let id = chat::conversation_id(w.shop, ChatChannel::Whatsapp, "6281111111111");
    w.ok(inbound("6281111111111", 1, "halo")).await;
    for label in ["belum bayar", "kirim hari ini"] {
        w.ok(Command::ChangeConversation {
            conversation_id: id,
            change: ConversationChange::AddLabel {
                label: label.into(),
            },
        })
        .await;
    }
    w.ok(Command::ChangeConversation {
        conversation_id: id,
        change: ConversationChange::RemoveLabel {
            label: "belum bayar".into(),
        },
    })
    .await;
    assert_eq!(
        w.conversation(id)
            .await
            .labels
            .into_iter()
            .collect::<Vec<_>>(),
        ["kirim hari ini"]
    );
    for n in 0..19 {
        w.ok(Command::ChangeConversation {
            conversation_id: id,
            change: ConversationChange::AddLabel {
                label: format!("l{n}"),
            },
        })
        .await;
    }
    let r = w
        .rejected(Command::ChangeConversation {
            conversation_id: id,
            change: ConversationChange::AddLabel {
                label: "satu lagi".into(),
            },
        })
        .await;
    assert_eq!(r, Rejection::TooManyLabels { max: 20 });
    let unknown = Uuid::from_u128(5);
    let r = w
        .rejected(Command::ChangeConversation {
            conversation_id: unknown,
            change: ConversationChange::Resolve,
        })
        .await;
    assert_eq!(
        r,
        Rejection::UnknownConversation {
            conversation_id: unknown
        }
    );
}

#[tokio::test]
async fn messages_carry_text_up_to_the_limit_or_an_attachment() {
    let w = World::new().await;
    let long = "a".repeat(4_097);
    assert!(
        matches!(w.run(inbound("6282222222222", 1, &long)).await, Err(CommandError::Invalid(e)) if e[0].field == "text")
    );
    assert!(matches!(
        w.run(inbound("6282222222222", 1, "  ")).await,
        Err(CommandError::Invalid(_))
    ));
    let with_order = Command::SendMessage(SendMessage {
        party: party("6282222222222"),
        message_id: Uuid::from_u128(9),
        text: String::new(),
        attachment: Some(Attachment::Order {
            order_id: order_id(1),
        }),
    });
    w.ok(with_order).await;
    let bad_handle = Command::ReceiveMessage(ReceiveMessage {
        party: party("62 812"),
        message_id: Uuid::from_u128(1),
        text: "x".into(),
        attachment: None,
        sent_at: None,
    });
    assert!(
        matches!(w.run(bad_handle).await, Err(CommandError::Invalid(e)) if e[0].field == "handle")
    );
}

/// A channel's clock ahead of ours: the message is taken as sent when it
/// arrived, not in the future; an earlier time is kept.
#[tokio::test]
async fn a_message_is_not_sent_after_it_arrived() {
    let w = World::new().await;
    let at = |n: u128, sent_at: Timestamp| {
        Command::ReceiveMessage(ReceiveMessage {
            party: party("6282222222222"),
            message_id: Uuid::from_u128(n),
            text: "halo".into(),
            attachment: None,
            sent_at: Some(sent_at),
        })
    };
    let hour = 3_600_000_000;
    let sent = |done: &kedai_engine::command::Executed| match only(done, "MessageReceived") {
        DomainEvent::MessageReceived(m) => m.sent_at,
        _ => unreachable!(),
    };
    let future = w.ok(at(1, Timestamp(w.now.0 + 24 * hour))).await;
    assert_eq!(sent(&future), w.now);
    let past = w.ok(at(2, Timestamp(w.now.0 - hour))).await;
    assert_eq!(sent(&past), Timestamp(w.now.0 - hour));
    // A conversation new to kedai starts with its first message, not when
    // kedai received it.
    let first = w
        .ok(Command::ReceiveMessage(ReceiveMessage {
            party: party("6283333333333"),
            message_id: Uuid::from_u128(9),
            text: "halo".into(),
            attachment: None,
            sent_at: Some(Timestamp(w.now.0 - 2 * hour)),
        }))
        .await;
    assert!(matches!(only(&first, "ConversationStarted"),
        DomainEvent::ConversationStarted(s) if s.started_at == Timestamp(w.now.0 - 2 * hour)));
    // Before 1970 is refused: a response time counted from i64::MIN would
    // overflow.
    let ancient = w.run(at(3, Timestamp(i64::MIN))).await;
    assert!(
        matches!(&ancient, Err(CommandError::Invalid(e)) if e[0].field == "sent_at"),
        "{ancient:?}"
    );
}

#[tokio::test]
async fn templates_are_filled_with_data_and_wrong_keys_are_named() {
    let w = World::new().await;
    let template_id = Uuid::from_u128(0x7e);
    w.ok(Command::SaveTemplate(SaveTemplate {
        template_id,
        name: "Konfirmasi order".into(),
        body: "Halo {{fullname}}, order #{{order_id}} tanggal {{order_date}} sudah kami terima."
            .into(),
    }))
    .await;
    let send = |data: &[(&str, &str)], n: u128| Command::SendTemplate {
        party: party("6266324732846"),
        message_id: Uuid::from_u128(0x3000 + n),
        template_id,
        data: data
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    };
    let sent = w
        .ok(send(
            &[
                ("fullname", "Mr. Smith"),
                ("order_id", "67"),
                ("order_date", "2018-10-09 17:30:00"),
            ],
            1,
        ))
        .await;
    match &sent.events.last().unwrap().1 {
        DomainEvent::MessageSent(m) => {
            assert_eq!(
                m.text,
                "Halo Mr. Smith, order #67 tanggal 2018-10-09 17:30:00 sudah kami terima."
            );
            assert_eq!(
                (m.template_id, m.staff_id.as_str()),
                (Some(template_id), "ayu")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        w.rejected(send(&[("fullname", "x"), ("order_id", "1")], 2))
            .await,
        Rejection::TemplateKeyMissing {
            key: "order_date".into()
        }
    );
    let extra = [
        ("fullname", "x"),
        ("order_id", "1"),
        ("order_date", "d"),
        ("resi", "JNE1"),
    ];
    assert_eq!(
        w.rejected(send(&extra, 3)).await,
        Rejection::TemplateKeyUnknown { key: "resi".into() }
    );
    w.ok(Command::DeleteTemplate { template_id }).await;
    assert_eq!(
        w.rejected(send(&[], 4)).await,
        Rejection::UnknownTemplate { template_id }
    );
    let malformed = w
        .run(Command::SaveTemplate(SaveTemplate {
            template_id: Uuid::from_u128(1),
            name: "x".into(),
            body: "Halo {{nama".into(),
        }))
        .await;
    assert!(matches!(malformed, Err(CommandError::Invalid(e)) if e[0].field == "body"));
}

fn template_message(phone: &str, n: u128, template_id: Uuid, data: &[(&str, &str)]) -> Command {
    Command::SendTemplateMessage(SendTemplateMessage {
        message_id: Uuid::from_u128(0x4000 + n),
        template_id,
        phone_number: phone.into(),
        name: "Budi".into(),
        customer_id: None,
        data: data
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
}

#[tokio::test]
async fn a_templated_whatsapp_message_is_recorded_and_queued_for_the_sender() {
    let w = World::new().await;
    let template_id = Uuid::from_u128(0x7f);
    w.ok(Command::SaveTemplate(SaveTemplate {
        template_id,
        name: "Resi".into(),
        body: "Halo {{fullname}}, resi {{awb}}".into(),
    }))
    .await;
    let data = [("fullname", "Budi"), ("awb", "JNE123")];
    // Given any accepted form of the number, when the template is sent,
    // then it lands in the conversation of the normalised number.
    let sent = w
        .ok(template_message("+62 812-3456-7890", 1, template_id, &data))
        .await;
    let types: Vec<&str> = sent.events.iter().map(|(_, e)| e.event_type()).collect();
    assert_eq!(
        types,
        ["ConversationStarted", "MessageSent", "MessageQueued"]
    );
    let id = chat::conversation_id(w.shop, ChatChannel::Whatsapp, "6281234567890");
    match &sent.events[2].1 {
        DomainEvent::MessageQueued(q) => {
            assert_eq!((q.conversation_id, q.to.as_str()), (id, "6281234567890"))
        }
        other => panic!("{other:?}"),
    }
    match &sent.events[1].1 {
        DomainEvent::MessageSent(m) => assert_eq!(m.text, "Halo Budi, resi JNE123"),
        other => panic!("{other:?}"),
    }
    w.ok(template_message("0812 3456 7890", 2, template_id, &data))
        .await;
    let conversation = w.conversation(id).await;
    assert_eq!(
        conversation.messages, 2,
        "both forms reach one conversation"
    );
    assert_eq!(conversation.status, Some(ChatStatus::Served));
    assert_eq!(
        conversation.outbox.values().copied().collect::<Vec<_>>(),
        [Delivery::Queued, Delivery::Queued]
    );
    // The same message id again records nothing.
    let again = w
        .ok(template_message("6281234567890", 1, template_id, &data))
        .await;
    assert!(again.events.is_empty());

    // Bad input is refused before anything is recorded.
    let bad_phone = w
        .run(template_message("021-555-1234", 3, template_id, &data))
        .await;
    assert!(
        matches!(&bad_phone, Err(CommandError::Invalid(e)) if e[0].field == "phone_number"),
        "{bad_phone:?}"
    );
    assert_eq!(
        w.rejected(template_message(
            "0812 3456 7890",
            4,
            template_id,
            &[("fullname", "Budi")]
        ))
        .await,
        Rejection::TemplateKeyMissing { key: "awb".into() }
    );
    let unknown = Uuid::from_u128(0xdead);
    assert_eq!(
        w.rejected(template_message("0812 3456 7890", 5, unknown, &data))
            .await,
        Rejection::UnknownTemplate {
            template_id: unknown
        }
    );
    assert_eq!(w.conversation(id).await.messages, 2);
}

#[tokio::test]
async fn the_first_dispatch_outcome_of_a_queued_message_stands() {
    let w = World::new().await;
    let template_id = Uuid::from_u128(0x80);
    w.ok(Command::SaveTemplate(SaveTemplate {
        template_id,
        name: "Halo".into(),
        body: "Halo {{fullname}}".into(),
    }))
    .await;
    w.ok(template_message(
        "012-345 6789",
        1,
        template_id,
        &[("fullname", "Aisyah")],
    ))
    .await;
    let id = chat::conversation_id(w.shop, ChatChannel::Whatsapp, "60123456789");
    let message_id = Uuid::from_u128(0x4001);
    let record = |message_id: Uuid, outcome: DispatchOutcome| Command::RecordDispatch {
        conversation_id: id,
        message_id,
        outcome,
    };
    let sent = w
        .ok(record(
            message_id,
            DispatchOutcome::Sent {
                attempts: 3,
                gateway_message_id: Some("wamid.1".into()),
            },
        ))
        .await;
    assert!(matches!(&sent.events[0].1, DomainEvent::MessageDispatched(d) if d.attempts == 3));
    assert_eq!(w.conversation(id).await.outbox[&message_id], Delivery::Sent);
    let late = w
        .ok(record(
            message_id,
            DispatchOutcome::Failed {
                attempts: 4,
                reason: "timeout".into(),
            },
        ))
        .await;
    assert!(late.events.is_empty(), "sent stays sent");
    assert_eq!(w.conversation(id).await.outbox[&message_id], Delivery::Sent);
    // A message that was never queued (typed by staff) has no outcome.
    w.ok(Command::SendMessage(SendMessage {
        party: party("60123456789"),
        message_id: Uuid::from_u128(0x5000),
        text: "manual".into(),
        attachment: None,
    }))
    .await;
    assert_eq!(
        w.rejected(record(
            Uuid::from_u128(0x5000),
            DispatchOutcome::Failed {
                attempts: 1,
                reason: "x".into()
            }
        ))
        .await,
        Rejection::MessageNotQueued {
            message_id: Uuid::from_u128(0x5000)
        }
    );
    let invalid = w
        .run(record(
            message_id,
            DispatchOutcome::Sent {
                attempts: 0,
                gateway_message_id: None,
            },
        ))
        .await;
    assert!(matches!(invalid, Err(CommandError::Invalid(_))));
}

#[tokio::test]
async fn the_initial_import_brings_fifteen_conversations_in_one_append() {
    let w = World::new().await;
    let conversations: Vec<ImportedConversation> = (0..15u128)
        .map(|c| ImportedConversation {
            party: Party {
                channel: ChatChannel::Shopee,
                handle: format!("buyer{c}"),
                name: format!("Buyer {c}"),
                customer_id: None,
            },
            messages: (0..30u128)
                .map(|m| ImportedMessage {
                    message_id: Uuid::from_u128(c << 16 | m),
                    author: if m % 2 == 0 {
                        Author::Customer
                    } else {
                        Author::Staff {
                            staff_id: "ayu".into(),
                        }
                    },
                    text: format!("pesan {m}"),
                    attachment: None,
                    sent_at: Timestamp(1_700_000_000_000_000 + m as i64),
                })
                .collect(),
        })
        .collect();
    let import = ImportHistory {
        channel: ChatChannel::Shopee,
        conversations,
    };
    let before = w.engine.store().last_position().await.unwrap();
    let done = w.ok(Command::ImportHistory(import.clone())).await;
    assert_eq!(
        done.events.len(),
        30,
        "a start and one import per conversation"
    );
    assert_eq!(done.position, before + 30, "one atomic append");
    assert!(
        matches!(&done.events[0].1, DomainEvent::ConversationStarted(s)
            if s.started_at == Timestamp(1_700_000_000_000_000)),
        "a conversation new to kedai started with its first message"
    );
    let id = chat::conversation_id(w.shop, ChatChannel::Shopee, "buyer3");
    assert_eq!(
        (
            w.conversation(id).await.messages,
            w.conversation(id).await.status
        ),
        (30, Some(ChatStatus::Served))
    );
    let again = w.ok(Command::ImportHistory(import.clone())).await;
    assert!(again.events.is_empty(), "importing twice adds nothing");
    let mut too_many = import;
    too_many
        .conversations
        .push(too_many.conversations[0].clone());
    assert!(matches!(
        w.run(Command::ImportHistory(too_many)).await,
        Err(CommandError::Invalid(_))
    ));
}

fn content(quantity: i64) -> CheckoutContent {
    CheckoutContent {
        items: vec![CheckoutItem {
            sku: sku("KAOS-M"),
            product_name: "Kaos Polos".into(),
            name: "M".into(),
            price: Money(50_000),
            quantity,
        }],
        customer: CheckoutCustomer {
            first_name: "Abu".into(),
            last_name: "Ali".into(),
            phone: "60123456789".into(),
            email: "abuali@example.com".into(),
        },
        shipping_address: None,
        shipping: Money(0),
        rate: "FREE SHIPPING COD".into(),
    }
}

/// An item's price and quantity are each bounded, and so is their product
/// (a subtotal past `i64` panicked the command before).
#[tokio::test]
async fn a_checkout_item_worth_more_than_the_largest_amount_is_refused() {
    let w = World::new().await;
    let mut huge = content(1_000_000_000);
    huge.items[0].price = Money(10_000_000_000_000);
    let r = w
        .run(Command::StartCheckout(StartCheckout {
            checkout_id: Uuid::from_u128(0xc4),
            domain: "tokobatik.myshoppegram.com".into(),
            content: huge,
        }))
        .await;
    assert!(
        matches!(&r, Err(CommandError::Invalid(e))
            if e[0].field == "items[0].quantity" && e[0].message.contains("price x quantity")),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_checkout_becomes_an_order_in_one_append() {
    let w = World::new().await;
    w.receive("KAOS-M", MALANG, 5).await;
    let id = Uuid::from_u128(0xc4);
    w.ok(Command::StartCheckout(StartCheckout {
        checkout_id: id,
        domain: "tokobatik.myshoppegram.com".into(),
        content: content(1),
    }))
    .await;
    w.ok(Command::UpdateCheckout {
        checkout_id: id,
        content: content(2),
    })
    .await;
    assert_eq!(
        w.checkout(id).await.content.unwrap().total(),
        Money(100_000)
    );
    let completed = w
        .ok(Command::CompleteCheckout {
            checkout_id: id,
            order: place(order_id(1), vec![line("KAOS-M", 2)]),
        })
        .await;
    let kinds: Vec<&str> = completed
        .events
        .iter()
        .map(|(_, e)| e.event_type())
        .collect();
    assert_eq!(kinds, ["OrderPlaced", "StockReserved", "CheckoutCompleted"]);
    assert_eq!(w.checkout(id).await.status, Some(CheckoutStatus::Completed));
    assert_eq!(
        w.engine
            .order(w.shop, order_id(1))
            .await
            .unwrap()
            .payment_status(),
        PaymentStatus::Unpaid
    );
    let late = w
        .rejected(Command::UpdateCheckout {
            checkout_id: id,
            content: content(3),
        })
        .await;
    assert_eq!(
        late,
        Rejection::CheckoutClosed {
            checkout_id: id,
            status: CheckoutStatus::Completed
        }
    );
    // Completing needs the stock like any order: nothing is recorded if short.
    let other = Uuid::from_u128(0xc5);
    w.ok(Command::StartCheckout(StartCheckout {
        checkout_id: other,
        domain: "x.myshoppegram.com".into(),
        content: content(9),
    }))
    .await;
    let short = w
        .rejected(Command::CompleteCheckout {
            checkout_id: other,
            order: place(order_id(2), vec![line("KAOS-M", 9)]),
        })
        .await;
    assert!(matches!(short, Rejection::InsufficientStock { .. }));
    assert_eq!(w.checkout(other).await.status, Some(CheckoutStatus::Open));
}

#[tokio::test]
async fn a_checkout_is_abandoned_only_when_due() {
    let w = World::new().await;
    let id = Uuid::from_u128(0xc6);
    let start = w.now;
    w.ok(Command::StartCheckout(StartCheckout {
        checkout_id: id,
        domain: "x.myshoppegram.com".into(),
        content: content(1),
    }))
    .await;
    let minutes = |m: i64| Timestamp(start.0 + m * 60_000_000);
    let early = w
        .run_at(minutes(59), Command::AbandonCheckout { checkout_id: id })
        .await
        .unwrap();
    assert!(early.events.is_empty(), "not yet 60 minutes");
    w.run_at(
        minutes(30),
        Command::UpdateCheckout {
            checkout_id: id,
            content: content(2),
        },
    )
    .await
    .unwrap();
    assert!(
        w.run_at(minutes(61), Command::AbandonCheckout { checkout_id: id })
            .await
            .unwrap()
            .events
            .is_empty(),
        "60 minutes count from the last update"
    );
    let due = w
        .run_at(minutes(90), Command::AbandonCheckout { checkout_id: id })
        .await
        .unwrap();
    assert_eq!(due.events.len(), 1);
    assert_eq!(w.checkout(id).await.status, Some(CheckoutStatus::Abandoned));
}

#[tokio::test]
async fn the_scheduler_records_an_abandonment_once_under_its_key() {
    let w = World::new().await;
    let id = Uuid::from_u128(0xc7);
    w.ok(Command::StartCheckout(StartCheckout {
        checkout_id: id,
        domain: "x.myshoppegram.com".into(),
        content: content(1),
    }))
    .await;
    let due = Timestamp(w.now.0 + 60 * 60_000_000);
    let meta = w.meta().at(due).with_key(format!("scheduler abandon {id}"));
    let abandon = Command::AbandonCheckout { checkout_id: id };
    let first = w.engine.execute(w.shop, &meta, &abandon).await.unwrap();
    assert_eq!(first.status, kedai_engine::AppendStatus::Recorded);
    assert_eq!(first.events.len(), 1);
    // A second run (another node, or after a restart) with the same key.
    let second = w
        .engine
        .execute(w.shop, &meta.clone().at(Timestamp(due.0 + 1)), &abandon)
        .await
        .unwrap();
    assert_eq!(second.status, kedai_engine::AppendStatus::AlreadyRecorded);
    assert_eq!(second.position, first.position);
    let history = w
        .engine
        .store()
        .read_stream(
            &kedai_engine::domain::ids::streams::checkout(w.shop, id),
            0,
            100,
        )
        .await
        .unwrap();
    let abandoned = history
        .iter()
        .filter(|e| &*e.event_type == "CheckoutAbandoned")
        .count();
    assert_eq!(abandoned, 1);
    // And the buyer can no longer complete it.
    let closed = w
        .rejected(Command::CompleteCheckout {
            checkout_id: id,
            order: place(order_id(7), vec![line("KAOS-M", 1)]),
        })
        .await;
    assert_eq!(
        closed,
        Rejection::CheckoutClosed {
            checkout_id: id,
            status: CheckoutStatus::Abandoned
        }
    );
}

#[derive(Clone, Debug)]
enum ChatOp {
    In,
    Out,
    Assign,
    Unassign,
    Resolve,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random conversations follow the status rules at every step.
    #[test]
    fn chat_statuses_follow_their_rules(ops in prop::collection::vec(prop_oneof![
        4 => Just(ChatOp::In), 3 => Just(ChatOp::Out), 1 => Just(ChatOp::Assign), 1 => Just(ChatOp::Unassign), 1 => Just(ChatOp::Resolve)
    ], 1..30)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let w = World::new().await;
            let id = chat::conversation_id(w.shop, ChatChannel::Whatsapp, "6289999999999");
            w.ok(inbound("6289999999999", 0, "halo")).await;
            for (n, op) in ops.iter().enumerate() {
                let n = n as u128 + 1;
                let before = w.conversation(id).await;
                let command = match op {
                    ChatOp::In => inbound("6289999999999", n, "lagi"),
                    ChatOp::Out => outbound("6289999999999", n, "jawab"),
                    ChatOp::Assign => Command::ChangeConversation { conversation_id: id, change: ConversationChange::Assign { staff_id: "budi".into() } },
                    ChatOp::Unassign => Command::ChangeConversation { conversation_id: id, change: ConversationChange::Unassign },
                    ChatOp::Resolve => Command::ChangeConversation { conversation_id: id, change: ConversationChange::Resolve },
                };
                w.ok(command).await;
                let after = w.conversation(id).await;
                let expected = match op {
                    ChatOp::Resolve => ChatStatus::Resolved,
                    ChatOp::In if after.assignee.is_some() => ChatStatus::Mine,
                    ChatOp::In => ChatStatus::Unserved,
                    ChatOp::Out if before.status == Some(ChatStatus::Resolved) => ChatStatus::Resolved,
                    ChatOp::Out if after.assignee.is_some() => ChatStatus::Mine,
                    ChatOp::Out => ChatStatus::Served,
                    ChatOp::Assign if before.status == Some(ChatStatus::Resolved) => ChatStatus::Resolved,
                    ChatOp::Assign => ChatStatus::Mine,
                    ChatOp::Unassign if before.status == Some(ChatStatus::Mine) => {
                        if after.last_inbound { ChatStatus::Unserved } else { ChatStatus::Served }
                    }
                    ChatOp::Unassign => before.status.unwrap(),
                };
                prop_assert_eq!(after.status, Some(expected), "after {:?}", op);
            }
            Ok(())
        })?;
    }
}

//! Given / when / then tests of catalog, stock and orders through the
//! command engine, with DOMAIN.md's worked examples as cases.

mod common;

use common::*;
use kedai_engine::command::{Command, CommandError};
use kedai_engine::domain::catalog::{CustomerCategory, Prices, ProductChange};
use kedai_engine::domain::events::OrderPlaced;
use kedai_engine::domain::ids::{OrderId, TransferId};
use kedai_engine::domain::money::{BasisPoints, Money};
use kedai_engine::domain::order::{
    Amount, CostCategory, LineInput, OrderCost, OrderStatus, PaymentStatus, Transition,
};
use kedai_engine::domain::stock::{RemovalReason, StockMove};
use kedai_engine::domain::{DomainEvent, Rejection};
use kedai_engine::{AppendStatus, ShopId};
use uuid::Uuid;

fn placed(executed: &kedai_engine::command::Executed) -> OrderPlaced {
    match only(executed, "OrderPlaced") {
        DomainEvent::OrderPlaced(p) => (**p).clone(),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn ngorder_order_total_example() {
    // DOMAIN.md: 2 x 2,000 + shipping 2,000 + other cost 20,000 - discount
    // 2,000 = 24,000.
    let w = World::new().await;
    w.ok(Command::ChangeProduct {
        product_id: KAOS,
        change: ProductChange::SetPrices {
            sku: sku("KAOS-M"),
            prices: Prices::flat(Money(2_000)),
        },
    })
    .await;
    w.receive("KAOS-M", MALANG, 10).await;
    let mut cmd = place(order_id(1), vec![line("KAOS-M", 2)]);
    cmd.shipping.cost = Money(2_000);
    cmd.costs = vec![
        OrderCost {
            name: "Biaya jurnal".into(),
            category: CostCategory::OtherCost,
            amount: Amount::Nominal {
                nominal: Money(20_000),
            },
        },
        OrderCost {
            name: "Diskon".into(),
            category: CostCategory::Discount,
            amount: Amount::Nominal {
                nominal: Money(2_000),
            },
        },
    ];
    let p = placed(&w.ok(Command::PlaceOrder(cmd)).await);
    assert_eq!(p.totals.subtotal, Money(4_000));
    assert_eq!(p.totals.other_costs, Money(20_000));
    assert_eq!(p.totals.order_discounts, Money(2_000));
    assert_eq!(p.totals.total, Money(24_000));
}

#[tokio::test]
async fn komship_line_subtotals_and_grand_total() {
    // 330,000 x 2 = 660,000; 200,000 x 2 = 400,000.
    let w = World::new().await;
    for (s, price) in [("KAOS-M", 330_000), ("KAOS-L", 200_000)] {
        w.ok(Command::ChangeProduct {
            product_id: KAOS,
            change: ProductChange::SetPrices {
                sku: sku(s),
                prices: Prices::flat(Money(price)),
            },
        })
        .await;
        w.receive(s, MALANG, 5).await;
    }
    let p = placed(
        &w.ok(Command::PlaceOrder(place(
            order_id(1),
            vec![line("KAOS-M", 2), line("KAOS-L", 2)],
        )))
        .await,
    );
    let totals: Vec<Money> = p.lines.iter().map(|l| l.line_total).collect();
    assert_eq!(totals, [Money(660_000), Money(400_000)]);
    // A COD order of subtotal 100,000 and shipping 14,000 totals 114,000.
    w.ok(Command::ChangeProduct {
        product_id: KAOS,
        change: ProductChange::SetPrices {
            sku: sku("KAOS-M"),
            prices: Prices::flat(Money(100_000)),
        },
    })
    .await;
    let mut cod = place(order_id(2), vec![line("KAOS-M", 1)]);
    cod.cod = true;
    cod.shipping.cost = Money(14_000);
    let p = placed(&w.ok(Command::PlaceOrder(cod)).await);
    assert_eq!(
        (p.totals.subtotal, p.totals.total, p.cod),
        (Money(100_000), Money(114_000), true)
    );
}

#[tokio::test]
async fn percentage_discounts_round_half_away_from_zero() {
    let w = World::new().await;
    w.ok(Command::ChangeProduct {
        product_id: KAOS,
        change: ProductChange::SetPrices {
            sku: sku("KAOS-M"),
            prices: Prices::flat(Money(1_525)),
        },
    })
    .await;
    w.receive("KAOS-M", MALANG, 5).await;
    let mut cmd = place(
        order_id(1),
        vec![LineInput {
            discount: Some(Amount::Percentage {
                percentage_bp: BasisPoints(200),
            }),
            ..line("KAOS-M", 1)
        }],
    );
    cmd.costs = vec![OrderCost {
        name: "Diskon 2%".into(),
        category: CostCategory::Discount,
        amount: Amount::Percentage {
            percentage_bp: BasisPoints::from_percent(2),
        },
    }];
    let p = placed(&w.ok(Command::PlaceOrder(cmd)).await);
    // 2% of 1,525 is 30.5: 31. Subtotal 1,494; 2% of it is 29.88: 30.
    assert_eq!(p.lines[0].discount_amount, Money(31));
    assert_eq!(p.totals.subtotal, Money(1_494));
    assert_eq!(p.totals.order_discounts, Money(30));
    assert_eq!(p.totals.total, Money(1_494 - 30 + 10_000));
}

#[tokio::test]
async fn ngorder_installments_and_overpayment() {
    // 100,000 (installment) then 126,947 settles a 226,947 order; a further
    // payment is refused with Ngorder's words.
    let w = World::new().await;
    w.ok(Command::ChangeProduct {
        product_id: KAOS,
        change: ProductChange::SetPrices {
            sku: sku("KAOS-M"),
            prices: Prices::flat(Money(216_947)),
        },
    })
    .await;
    w.receive("KAOS-M", MALANG, 5).await;
    let id = order_id(1);
    let p = placed(
        &w.ok(Command::PlaceOrder(place(id, vec![line("KAOS-M", 1)])))
            .await,
    );
    assert_eq!(p.totals.total, Money(226_947));
    w.pay(id, 100_000, 1).await.unwrap();
    let order = w.engine.order(w.shop, id).await.unwrap();
    assert_eq!(
        (order.payment_status(), order.remaining()),
        (PaymentStatus::PartiallyPaid, Money(126_947))
    );
    match w.pay(id, 126_948, 2).await {
        Err(CommandError::Rejected(
            r @ Rejection::AmountExceedsRemaining {
                remaining: Money(126_947),
                ..
            },
        )) => {
            assert!(
                r.to_string()
                    .starts_with("Amount is more than amount remaining of this order")
            );
        }
        other => panic!("{other:?}"),
    }
    w.pay(id, 126_947, 3).await.unwrap();
    assert_eq!(
        w.engine.order(w.shop, id).await.unwrap().payment_status(),
        PaymentStatus::Paid
    );
    match w.pay(id, 1, 4).await {
        Err(CommandError::Rejected(r @ Rejection::OrderAlreadyPaid { .. })) => {
            assert_eq!(r.to_string(), "Order has been paid")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn each_customer_category_pays_its_price_and_lines_keep_the_price_of_their_moment() {
    let w = World::new().await;
    w.receive("KAOS-M", MALANG, 100).await;
    let mut by_reseller = place(order_id(1), vec![line("KAOS-M", 1)]);
    by_reseller.sender_id = RESELLER;
    by_reseller.receiver_id = Some(SITI);
    let p = placed(&w.ok(Command::PlaceOrder(by_reseller)).await);
    assert_eq!(p.lines[0].unit_price, Money(40_000), "reseller price");
    assert_eq!(
        (p.sender.name.as_str(), p.receiver.name.as_str()),
        ("Toko Sinar", "Siti")
    );
    let p = placed(
        &w.ok(Command::PlaceOrder(place(
            order_id(2),
            vec![line("KAOS-M", 12)],
        )))
        .await,
    );
    assert_eq!(
        p.lines[0].unit_price,
        Money(35_000),
        "wholesale tier from 12"
    );
    assert_eq!(p.lines[0].unit_cost, Money(30_000));

    w.ok(Command::ChangeProduct {
        product_id: KAOS,
        change: ProductChange::SetCost {
            sku: sku("KAOS-M"),
            cost: Money(33_000),
        },
    })
    .await;
    w.ok(Command::ChangeProduct {
        product_id: KAOS,
        change: ProductChange::SetPrices {
            sku: sku("KAOS-M"),
            prices: Prices::flat(Money(60_000)),
        },
    })
    .await;
    let later = placed(
        &w.ok(Command::PlaceOrder(place(
            order_id(3),
            vec![line("KAOS-M", 1)],
        )))
        .await,
    );
    assert_eq!(
        (later.lines[0].unit_price, later.lines[0].unit_cost),
        (Money(60_000), Money(33_000))
    );
    let earlier = w.engine.order(w.shop, order_id(2)).await.unwrap();
    assert_eq!(
        earlier.placed.unwrap().lines[0].unit_cost,
        Money(30_000),
        "history keeps its cost"
    );
    // A marketplace order brings its own price.
    let mut shopee = place(
        order_id(4),
        vec![LineInput {
            unit_price: Some(Money(48_500)),
            ..line("KAOS-M", 1)
        }],
    );
    shopee.channel = kedai_engine::domain::order::Channel::Shopee;
    assert_eq!(
        placed(&w.ok(Command::PlaceOrder(shopee)).await).lines[0].unit_price,
        Money(48_500)
    );
}

#[tokio::test]
async fn allocation_takes_the_default_first_then_the_fullest_and_splits() {
    let w = World::new().await;
    w.receive("KAOS-M", MALANG, 3).await;
    w.receive("KAOS-M", SURABAYA, 10).await;
    let p = placed(
        &w.ok(Command::PlaceOrder(place(
            order_id(1),
            vec![line("KAOS-M", 2)],
        )))
        .await,
    );
    assert_eq!(
        p.lines[0]
            .allocations
            .iter()
            .map(|a| (a.warehouse_id, a.quantity))
            .collect::<Vec<_>>(),
        [(MALANG, 2)]
    );
    let p = placed(
        &w.ok(Command::PlaceOrder(place(
            order_id(2),
            vec![line("KAOS-M", 4)],
        )))
        .await,
    );
    assert_eq!(
        p.lines[0]
            .allocations
            .iter()
            .map(|a| (a.warehouse_id, a.quantity))
            .collect::<Vec<_>>(),
        [(MALANG, 1), (SURABAYA, 3)],
        "split: what is left in the default, then the rest"
    );
    assert_eq!(w.stock("KAOS-M", MALANG).await, (3, 3));
    assert_eq!(w.stock("KAOS-M", SURABAYA).await, (10, 3));
    let explicit = place(
        order_id(3),
        vec![LineInput {
            warehouse_id: Some(SURABAYA),
            ..line("KAOS-M", 7)
        }],
    );
    w.ok(Command::PlaceOrder(explicit)).await;
    assert_eq!(w.stock("KAOS-M", SURABAYA).await, (10, 10));
}

#[tokio::test]
async fn insufficient_stock_rejects_the_whole_order_and_names_every_sku_short() {
    let w = World::new().await;
    w.receive("KAOS-M", MALANG, 2).await;
    w.receive("KAOS-L", SURABAYA, 1).await;
    let cmd = place(
        order_id(1),
        vec![line("KAOS-M", 1), line("KAOS-L", 2), line("KAOS-M", 2)],
    );
    match w.rejected(Command::PlaceOrder(cmd)).await {
        Rejection::InsufficientStock { shortages } => {
            let short: Vec<(String, i64, i64)> = shortages
                .iter()
                .map(|s| (s.sku.to_string(), s.requested, s.available))
                .collect();
            assert_eq!(short, [("KAOS-L".into(), 2, 1), ("KAOS-M".into(), 2, 1)]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        w.stock("KAOS-M", MALANG).await,
        (2, 0),
        "nothing was reserved"
    );
    assert!(
        w.engine
            .order(w.shop, order_id(1))
            .await
            .unwrap()
            .placed
            .is_none()
    );
}

#[tokio::test]
async fn preorders_sell_below_zero_and_supplier_products_are_not_counted() {
    let w = World::new().await;
    w.ok(Command::PlaceOrder(place(
        order_id(1),
        vec![line("BATIK-1", 3), line("TAS-1", 1)],
    )))
    .await;
    assert_eq!(w.stock("BATIK-1", MALANG).await, (0, 3), "available is -3");
    let shipped = w
        .transition(
            order_id(1),
            Transition::Ship {
                awb: "JNE123".into(),
            },
        )
        .await;
    assert!(
        matches!(
            shipped,
            Err(CommandError::Rejected(Rejection::InsufficientStock { .. }))
        ),
        "the goods are not here yet"
    );
    w.receive("BATIK-1", MALANG, 3).await;
    w.transition(
        order_id(1),
        Transition::Ship {
            awb: "JNE123".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(w.stock("BATIK-1", MALANG).await, (0, 0));

    let moved = w
        .run(Command::MoveStock(StockMove::Receive {
            sku: sku("TAS-1"),
            warehouse_id: MALANG,
            quantity: 1,
            note: String::new(),
        }))
        .await;
    assert!(matches!(
        moved,
        Err(CommandError::Rejected(Rejection::SkuNotTracked { .. }))
    ));
    w.ok(Command::ChangeProduct {
        product_id: TAS,
        change: ProductChange::SetSupplierStock {
            sku: sku("TAS-1"),
            in_stock: false,
        },
    })
    .await;
    let r = w
        .rejected(Command::PlaceOrder(place(
            order_id(2),
            vec![line("TAS-1", 1)],
        )))
        .await;
    assert!(matches!(r, Rejection::SupplierOutOfStock { .. }), "{r}");
}

#[tokio::test]
async fn the_lifecycle_moves_stock_and_illegal_moves_say_where_the_order_is() {
    let w = World::new().await;
    w.receive("KAOS-M", MALANG, 10).await;
    let id = order_id(1);
    w.ok(Command::PlaceOrder(place(id, vec![line("KAOS-M", 4)])))
        .await;
    let r = w.transition(id, Transition::Deliver).await.unwrap_err();
    assert_eq!(
        r.to_string(),
        format!("cannot deliver order {id}: it is placed")
    );
    for t in [Transition::Process, Transition::Pack, Transition::Ready] {
        w.transition(id, t).await.unwrap();
    }
    assert_eq!(w.stock("KAOS-M", MALANG).await, (10, 4));
    let shipped = w
        .transition(
            id,
            Transition::Ship {
                awb: "JNE0012345".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(shipped.events.len(), 2, "order and stock in one append");
    assert_eq!(w.stock("KAOS-M", MALANG).await, (6, 0));
    let r = w
        .transition(
            id,
            Transition::Cancel {
                reason: "berubah pikiran".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(
        r,
        CommandError::Rejected(Rejection::IllegalTransition {
            status: OrderStatus::Shipped,
            ..
        })
    ));
    w.transition(id, Transition::Deliver).await.unwrap();
    w.transition(id, Transition::Complete).await.unwrap();
    let order = w.engine.order(w.shop, id).await.unwrap();
    assert_eq!(
        (order.status, order.awb.as_deref()),
        (Some(OrderStatus::Completed), Some("JNE0012345"))
    );
}

#[tokio::test]
async fn cancel_releases_and_makes_paid_money_refundable() {
    let w = World::new().await;
    w.receive("KAOS-M", MALANG, 5).await;
    let id = order_id(1);
    w.ok(Command::PlaceOrder(place(id, vec![line("KAOS-M", 5)])))
        .await;
    w.pay(id, 20_000, 1).await.unwrap();
    let cancelled = w
        .transition(
            id,
            Transition::Cancel {
                reason: "stok rusak".into(),
            },
        )
        .await
        .unwrap();
    match only(&cancelled, "OrderCancelled") {
        DomainEvent::OrderCancelled(c) => assert_eq!(c.refundable, Money(20_000)),
        _ => unreachable!(),
    }
    assert_eq!(w.stock("KAOS-M", MALANG).await, (5, 0));
    assert!(matches!(
        w.pay(id, 1, 2).await,
        Err(CommandError::Rejected(Rejection::IllegalTransition { .. }))
    ));
    let too_much = w
        .run(Command::RefundOrder {
            order_id: id,
            amount: Money(20_001),
            note: String::new(),
        })
        .await;
    assert!(matches!(
        too_much,
        Err(CommandError::Rejected(
            Rejection::RefundExceedsRefundable { .. }
        ))
    ));
    w.ok(Command::RefundOrder {
        order_id: id,
        amount: Money(20_000),
        note: "transfer balik".into(),
    })
    .await;
    assert_eq!(
        w.engine.order(w.shop, id).await.unwrap().payment_status(),
        PaymentStatus::Refunded
    );
}

#[tokio::test]
async fn returns_restock_on_arrival_and_lost_parcels_do_not() {
    let w = World::new().await;
    w.receive("KAOS-M", MALANG, 5).await;
    for n in [1, 2] {
        w.ok(Command::PlaceOrder(place(
            order_id(n),
            vec![line("KAOS-M", 2)],
        )))
        .await;
        w.transition(
            order_id(n),
            Transition::Ship {
                awb: format!("SICEPAT{n}"),
            },
        )
        .await
        .unwrap();
    }
    assert_eq!(w.stock("KAOS-M", MALANG).await, (1, 0));
    w.transition(
        order_id(1),
        Transition::StartReturn {
            reason: "alamat salah".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        w.stock("KAOS-M", MALANG).await,
        (1, 0),
        "nothing back until it arrives"
    );
    w.transition(order_id(1), Transition::ReceiveReturn)
        .await
        .unwrap();
    assert_eq!(w.stock("KAOS-M", MALANG).await, (3, 0));
    w.transition(
        order_id(2),
        Transition::Lose {
            note: "hilang di hub".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(w.stock("KAOS-M", MALANG).await, (3, 0));
    assert_eq!(
        w.engine.order(w.shop, order_id(2)).await.unwrap().status,
        Some(OrderStatus::Lost)
    );
}

#[tokio::test]
async fn stock_moves_receive_remove_transfer_count() {
    let w = World::new().await;
    w.receive("KAOS-M", MALANG, 10).await;
    w.ok(Command::MoveStock(StockMove::Remove {
        sku: sku("KAOS-M"),
        warehouse_id: MALANG,
        quantity: 2,
        reason: RemovalReason::Damaged,
        note: "sobek".into(),
    }))
    .await;
    let transfer = StockMove::Transfer {
        sku: sku("KAOS-M"),
        from_warehouse_id: MALANG,
        to_warehouse_id: SURABAYA,
        quantity: 5,
        transfer_id: TransferId(Uuid::from_u128(1)),
        note: String::new(),
    };
    let moved = w.ok(Command::MoveStock(transfer)).await;
    assert_eq!(moved.events.len(), 2, "both halves in one append");
    assert_eq!(
        (
            w.stock("KAOS-M", MALANG).await,
            w.stock("KAOS-M", SURABAYA).await
        ),
        ((3, 0), (5, 0))
    );
    let counted = w
        .ok(Command::MoveStock(StockMove::Count {
            sku: sku("KAOS-M"),
            warehouse_id: SURABAYA,
            counted: 7,
            note: "stok opname".into(),
        }))
        .await;
    assert!(matches!(only(&counted, "StockCounted"), DomainEvent::StockCounted(c) if c.delta == 2));
    let r = w
        .rejected(Command::MoveStock(StockMove::Remove {
            sku: sku("KAOS-M"),
            warehouse_id: MALANG,
            quantity: 4,
            reason: RemovalReason::Lost,
            note: String::new(),
        }))
        .await;
    assert!(matches!(r, Rejection::InsufficientStock { .. }));
    let unknown = kedai_engine::domain::ids::WarehouseId(Uuid::from_u128(0x99));
    let r = w
        .rejected(Command::MoveStock(StockMove::Receive {
            sku: sku("KAOS-M"),
            warehouse_id: unknown,
            quantity: 1,
            note: String::new(),
        }))
        .await;
    assert_eq!(
        r,
        Rejection::UnknownWarehouse {
            warehouse_id: unknown
        }
    );
    let r = w
        .rejected(Command::MoveStock(StockMove::Receive {
            sku: sku("NOPE"),
            warehouse_id: MALANG,
            quantity: 1,
            note: String::new(),
        }))
        .await;
    assert_eq!(r, Rejection::UnknownSku { sku: sku("NOPE") });
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field_and_changes_nothing() {
    let w = World::new().await;
    let before = w.engine.store().last_position().await.unwrap();
    let bad = [
        (
            Command::MoveStock(StockMove::Receive {
                sku: sku("KAOS-M"),
                warehouse_id: MALANG,
                quantity: 0,
                note: String::new(),
            }),
            "quantity",
        ),
        (
            Command::MoveStock(StockMove::Receive {
                sku: sku("KAOS-M"),
                warehouse_id: MALANG,
                quantity: -5,
                note: String::new(),
            }),
            "quantity",
        ),
        (Command::PlaceOrder(place(order_id(1), vec![])), "lines"),
        (
            Command::PlaceOrder(place(order_id(1), vec![line("KAOS-M", 0)])),
            "lines[0].quantity",
        ),
    ];
    for (cmd, field) in bad {
        match w.run(cmd).await {
            Err(CommandError::Invalid(errors)) => {
                assert!(errors.iter().any(|e| e.field == field), "{errors:?}")
            }
            other => panic!("expected a field error on {field}, got {other:?}"),
        }
    }
    let mut bad_phone = details("X", CustomerCategory::Customer, "Malang");
    bad_phone.phone = Some("call me".into());
    let r = w
        .run(Command::RegisterCustomer {
            customer_id: kedai_engine::domain::ids::CustomerId(Uuid::from_u128(0x77)),
            details: bad_phone,
        })
        .await;
    assert!(matches!(r, Err(CommandError::Invalid(e)) if e[0].field == "phone"));
    assert_eq!(w.engine.store().last_position().await.unwrap(), before);
    // Quantity and price each within bounds, their product not: a clear
    // refusal, not a panic. A billion KAOS-L, at its lowest wholesale
    // price, come to more than 1e13.
    w.receive("KAOS-L", MALANG, 1_000_000_000).await;
    let before = w.engine.store().last_position().await.unwrap();
    let huge = w
        .rejected(Command::PlaceOrder(place(
            order_id(2),
            vec![line("KAOS-L", 1_000_000_000)],
        )))
        .await;
    assert!(
        matches!(
            &huge,
            Rejection::LineTooLarge {
                quantity: 1_000_000_000,
                unit: Money(38_500),
                ..
            }
        ),
        "{huge:?}"
    );
    assert_eq!(huge.code(), "line_too_large");
    assert_eq!(w.engine.store().last_position().await.unwrap(), before);
}

#[tokio::test]
async fn another_shop_sees_none_of_it() {
    let w = World::new().await;
    w.receive("KAOS-M", MALANG, 10).await;
    w.ok(Command::PlaceOrder(place(
        order_id(1),
        vec![line("KAOS-M", 1)],
    )))
    .await;
    let other = ShopId(Uuid::from_u128(0x6));
    let r = w
        .engine
        .execute(
            other,
            &w.meta(),
            &Command::PlaceOrder(place(OrderId(Uuid::from_u128(9)), vec![line("KAOS-M", 1)])),
        )
        .await;
    assert!(matches!(
        r,
        Err(CommandError::Rejected(Rejection::UnknownShop))
    ));
    assert!(
        w.engine
            .order(other, order_id(1))
            .await
            .unwrap()
            .placed
            .is_none()
    );
}

#[tokio::test]
async fn a_repeated_command_records_nothing_new() {
    let w = World::new().await;
    w.receive("KAOS-M", MALANG, 10).await;
    let cmd = Command::PlaceOrder(place(order_id(1), vec![line("KAOS-M", 3)]));
    let meta = w.meta().with_key("checkout-7781");
    let first = w.engine.execute(w.shop, &meta, &cmd).await.unwrap();
    let head = w.engine.store().last_position().await.unwrap();
    let again = w.engine.execute(w.shop, &meta, &cmd).await.unwrap();
    assert_eq!(again.status, AppendStatus::AlreadyRecorded);
    assert_eq!(again.position, first.position);
    assert_eq!(
        w.engine.store().last_position().await.unwrap(),
        head,
        "nothing new recorded"
    );
    assert_eq!(w.stock("KAOS-M", MALANG).await, (10, 3), "reserved once");
    // The key names the command: whatever is sent with it again gets the
    // first answer (the API compares request bodies and refuses a reused
    // key with a different body before it gets here).
    let other = Command::PlaceOrder(place(order_id(2), vec![line("KAOS-M", 1)]));
    let r = w.engine.execute(w.shop, &meta, &other).await.unwrap();
    assert_eq!(
        (r.status, r.position),
        (AppendStatus::AlreadyRecorded, first.position)
    );
    assert!(
        w.engine
            .order(w.shop, order_id(2))
            .await
            .unwrap()
            .placed
            .is_none()
    );
}

#[tokio::test]
async fn concurrent_repeats_of_one_command_record_it_once() {
    let w = std::sync::Arc::new(World::new().await);
    w.receive("KAOS-M", MALANG, 10).await;
    let cmd = Command::PlaceOrder(place(order_id(1), vec![line("KAOS-M", 3)]));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (w, cmd) = (w.clone(), cmd.clone());
        tasks.push(tokio::spawn(async move {
            w.engine
                .execute(w.shop, &w.meta().with_key("same"), &cmd)
                .await
                .unwrap()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap().status);
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == AppendStatus::Recorded)
            .count(),
        1
    );
    assert_eq!(w.stock("KAOS-M", MALANG).await, (10, 3));
}

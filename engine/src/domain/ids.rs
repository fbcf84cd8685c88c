//! Identifiers of the domain's entities, the SKU, and the names of the
//! streams each aggregate lives in.
//!
//! Entity ids are UUIDs chosen at the edge (the API makes them UUID v7) and
//! carried in commands, so deciding never needs a random number.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::{ShopId, StreamId};

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        crate::event::ordered_as_number!($name);

        impl $name {
            pub fn new(id: Uuid) -> Self {
                $name(id)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map($name)
            }
        }
    };
}

uuid_id!(
    /// A product (it has one or more variations, each a SKU).
    ProductId
);
uuid_id!(
    /// A warehouse of a shop.
    WarehouseId
);
uuid_id!(
    /// A customer of a shop (a buyer, a reseller, a dropshipper).
    CustomerId
);
uuid_id!(
    /// An order.
    OrderId
);
uuid_id!(
    /// A payment towards an order.
    PaymentId
);
uuid_id!(
    /// A transfer of stock between two warehouses.
    TransferId
);

/// Longest SKU accepted.
pub const SKU_LEN_MAX: usize = 64;

/// A stock keeping unit: one variation of a product, e.g. `KAOS-POLOS-M`.
/// 1 to 64 characters of letters, digits, `-`, `_` and `.`; unique per
/// shop; compared as written (case matters).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sku(String);

impl Sku {
    /// A SKU, or why the text is not one.
    pub fn parse(text: &str) -> Result<Sku, String> {
        if text.is_empty() {
            return Err("SKU is empty".into());
        }
        if text.len() > SKU_LEN_MAX {
            return Err(format!("SKU is longer than {SKU_LEN_MAX} characters"));
        }
        if let Some(c) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err(format!(
                "SKU {text:?} contains {c:?}; use letters, digits, '-', '_' and '.'"
            ));
        }
        Ok(Sku(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sku({})", self.0)
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The streams of a shop, by aggregate.
pub mod streams {
    use super::*;

    /// The shop's own stream: creation and settings.
    pub fn shop(shop: ShopId) -> StreamId {
        StreamId::new(shop, "shop")
    }

    /// The shop's warehouses (one stream: the list and the default).
    pub fn warehouses(shop: ShopId) -> StreamId {
        StreamId::new(shop, "warehouses")
    }

    pub fn product(shop: ShopId, id: ProductId) -> StreamId {
        StreamId::new(shop, format!("product-{id}"))
    }

    /// Claims a SKU for one product: appending to it with "no stream"
    /// makes SKUs unique per shop.
    pub fn sku(shop: ShopId, sku: &Sku) -> StreamId {
        StreamId::new(shop, format!("sku-{sku}"))
    }

    pub fn customer(shop: ShopId, id: CustomerId) -> StreamId {
        StreamId::new(shop, format!("customer-{id}"))
    }

    /// Stock of one SKU in one warehouse.
    pub fn stock(shop: ShopId, sku: &Sku, warehouse: WarehouseId) -> StreamId {
        StreamId::new(shop, format!("stock-{sku}@{warehouse}"))
    }

    pub fn order(shop: ShopId, id: OrderId) -> StreamId {
        StreamId::new(shop, format!("order-{id}"))
    }

    /// The seller's balance (the ledger).
    pub fn wallet(shop: ShopId) -> StreamId {
        StreamId::new(shop, "wallet")
    }

    pub fn withdrawal(shop: ShopId, id: Uuid) -> StreamId {
        StreamId::new(shop, format!("withdrawal-{id}"))
    }

    pub fn expense(shop: ShopId, id: Uuid) -> StreamId {
        StreamId::new(shop, format!("expense-{id}"))
    }

    pub fn checkout(shop: ShopId, id: Uuid) -> StreamId {
        StreamId::new(shop, format!("checkout-{id}"))
    }

    pub fn conversation(shop: ShopId, id: Uuid) -> StreamId {
        StreamId::new(shop, format!("conversation-{id}"))
    }

    /// The shop's API keys.
    pub fn keys(shop: ShopId) -> StreamId {
        StreamId::new(shop, "keys")
    }

    pub fn template(shop: ShopId, id: Uuid) -> StreamId {
        StreamId::new(shop, format!("template-{id}"))
    }

    /// A webhook subscription: its settings and status.
    pub fn webhook(shop: ShopId, id: Uuid) -> StreamId {
        StreamId::new(shop, format!("webhook-{id}"))
    }

    /// The outcomes of a subscription's deliveries (written by the
    /// delivery worker only).
    pub fn webhook_deliveries(shop: ShopId, id: Uuid) -> StreamId {
        StreamId::new(shop, format!("webhook-{id}-deliveries"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_are_checked() {
        assert!(Sku::parse("KAOS-POLOS_M.2").is_ok());
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse("KAOS M").unwrap_err().contains("' '"));
        assert!(Sku::parse(&"X".repeat(65)).is_err());
        assert!(
            Sku::parse("KAOS@1").is_err(),
            "'@' separates SKU and warehouse in stream names"
        );
    }

    #[test]
    fn stream_names_are_valid_store_names() {
        let shop = ShopId(Uuid::from_u128(1));
        let sku = Sku::parse("A-1").unwrap();
        let names = [
            streams::shop(shop),
            streams::warehouses(shop),
            streams::product(shop, ProductId(Uuid::from_u128(2))),
            streams::sku(shop, &sku),
            streams::customer(shop, CustomerId(Uuid::from_u128(3))),
            streams::stock(shop, &sku, WarehouseId(Uuid::from_u128(4))),
            streams::order(shop, OrderId(Uuid::from_u128(5))),
        ];
        for s in names {
            assert_eq!(s.problem(), None, "{s}");
        }
    }

    proptest::proptest! {
        /// Ids are ordered as their bytes are, one by one (what snapshots,
        /// reports and every B-tree keyed by an id rely on).
        #[test]
        fn ids_are_ordered_as_their_bytes(
            a in proptest::prelude::any::<[u8; 16]>(),
            b in proptest::prelude::any::<[u8; 16]>(),
            same_start in 0usize..=16,
        ) {
            // Often equal in their first bytes, as ids of one time are.
            let mut b = b;
            b[..same_start].copy_from_slice(&a[..same_start]);
            let (x, y) = (Uuid::from_bytes(a), Uuid::from_bytes(b));
            proptest::prop_assert_eq!(OrderId(x).cmp(&OrderId(y)), a.cmp(&b));
            proptest::prop_assert_eq!(ShopId(x).cmp(&ShopId(y)), a.cmp(&b));
            proptest::prop_assert_eq!(
                CustomerId(x).partial_cmp(&CustomerId(y)),
                Some(a.cmp(&b))
            );
        }
    }
}

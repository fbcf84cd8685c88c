//! The shop, its warehouses, its catalog (products, variations, SKUs) and
//! its customers: state, commands and pure decisions.
//!
//! Prices: a variation has a retail `price`, `price_reseller`,
//! `price_dropship` and optional `price1..3` for custom customer
//! categories, a cost `price_buy`, and optional wholesale tiers. A customer's
//! category picks the price ([`Prices::for_category`]); wholesale tiers
//! apply to categories with wholesale access (customers and custom
//! categories, not resellers or dropshippers, as Ngorder's defaults).
//! Price and cost changes are events; an order line copies the price and
//! cost of its moment.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::events::*;
use super::ids::{CustomerId, ProductId, Sku, WarehouseId};
use super::money::{Currency, Money};
use super::rejection::{Check, FieldError, Rejection};

/// Longest names and free texts.
pub const NAME_LEN_MAX: usize = 200;
pub const NOTE_LEN_MAX: usize = 1_000;
/// Most variations per product.
pub const VARIATIONS_MAX: usize = 100;
/// Longest preorder lead time (Ngorder: 90 days or 12 weeks).
pub const PREORDER_DAYS_MAX: u32 = 90;

// ----------------------------------------------------------------- shop

/// A shop as its own stream knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shop {
    pub created: Option<ShopCreated>,
}

impl Shop {
    pub fn evolve(&mut self, event: &DomainEvent) {
        match event {
            DomainEvent::ShopCreated(e) => self.created = Some((**e).clone()),
            DomainEvent::ShopSettingsChanged(e) => {
                if let Some(created) = &mut self.created {
                    created.settings = e.settings.clone();
                }
            }
            _ => {}
        }
    }

    pub fn settings(&self) -> Option<&ShopSettings> {
        self.created.as_ref().map(|c| &c.settings)
    }

    pub fn currency(&self) -> Option<Currency> {
        self.created.as_ref().map(|c| c.currency)
    }
}

impl ShopSettings {
    /// Defaults from the sources: Ngorder's Rp50.000 minimum withdrawal,
    /// Komship's 2.8% COD fee and 25% JNE cashback, Shoppegram's 60-minute
    /// abandonment. Amounts are in the currency's minor unit.
    pub fn defaults(currency: Currency) -> ShopSettings {
        let (withdrawal_min, withdrawal_fee) = match currency {
            Currency::Idr => (Money(50_000), Money(0)),
            Currency::Myr => (Money(5_000), Money(0)),
        };
        ShopSettings {
            withdrawal_min,
            withdrawal_fee,
            cod_fee_rate: super::money::BasisPoints(280),
            courier_cashback: BTreeMap::from([
                ("JNE".to_owned(), super::money::BasisPoints(2_500)),
                ("SICEPAT".to_owned(), super::money::BasisPoints(3_000)),
            ]),
            checkout_abandon_minutes: 60,
            low_stock_threshold: 5,
        }
    }

    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        c.that(
            !self.withdrawal_min.is_negative(),
            "settings.withdrawal_min",
            "must not be negative",
        )
        .that(
            !self.withdrawal_fee.is_negative(),
            "settings.withdrawal_fee",
            "must not be negative",
        )
        .that(
            self.cod_fee_rate.0 <= 10_000,
            "settings.cod_fee_rate",
            "must be at most 10000 basis points",
        )
        .that(
            (1..=10_080).contains(&self.checkout_abandon_minutes),
            "settings.checkout_abandon_minutes",
            "must be between 1 and 10080 (a week)",
        )
        .that(
            self.low_stock_threshold >= 0,
            "settings.low_stock_threshold",
            "must not be negative",
        );
        for (courier, rate) in &self.courier_cashback {
            c.that(
                rate.0 <= 10_000,
                format!("settings.courier_cashback.{courier}"),
                "must be at most 10000 basis points",
            );
        }
        c.finish()
    }
}

/// Opens a shop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateShop {
    pub name: String,
    pub currency: Currency,
    pub time_zone: String,
    pub utc_offset_minutes: i32,
    pub settings: ShopSettings,
}

impl CreateShop {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        c.text(&self.name, "name", true, NAME_LEN_MAX)
            .text(&self.time_zone, "time_zone", true, 64)
            .that(
                (-12 * 60..=14 * 60).contains(&self.utc_offset_minutes),
                "utc_offset_minutes",
                "must be between -720 and 840",
            );
        let settings = self.settings.validate();
        let mut errors = c.finish().err().unwrap_or_default();
        errors.extend(settings.err().unwrap_or_default());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

pub fn create_shop(shop: &Shop, cmd: &CreateShop) -> Result<Vec<DomainEvent>, Rejection> {
    if shop.created.is_some() {
        return Err(Rejection::ShopAlreadyExists);
    }
    Ok(vec![
        ShopCreated {
            name: cmd.name.trim().to_owned(),
            currency: cmd.currency,
            time_zone: cmd.time_zone.clone(),
            utc_offset_minutes: cmd.utc_offset_minutes,
            settings: cmd.settings.clone(),
        }
        .into(),
    ])
}

pub fn change_settings(
    shop: &Shop,
    settings: &ShopSettings,
) -> Result<Vec<DomainEvent>, Rejection> {
    if shop.created.is_none() {
        return Err(Rejection::UnknownShop);
    }
    Ok(vec![
        ShopSettingsChanged {
            settings: settings.clone(),
        }
        .into(),
    ])
}

// ----------------------------------------------------------- warehouses

/// One warehouse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warehouse {
    pub id: WarehouseId,
    pub name: String,
    pub city: Option<String>,
}

/// The shop's warehouses and which is the default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Warehouses {
    pub list: Vec<Warehouse>,
    pub default: Option<WarehouseId>,
}

impl Warehouses {
    pub fn evolve(&mut self, event: &DomainEvent) {
        match event {
            DomainEvent::WarehouseAdded(e) => self.list.push(Warehouse {
                id: e.warehouse_id,
                name: e.name.clone(),
                city: e.city.clone(),
            }),
            DomainEvent::DefaultWarehouseSet(e) => self.default = Some(e.warehouse_id),
            _ => {}
        }
    }

    pub fn get(&self, id: WarehouseId) -> Option<&Warehouse> {
        self.list.iter().find(|w| w.id == id)
    }

    pub fn require(&self, id: WarehouseId) -> Result<&Warehouse, Rejection> {
        self.get(id)
            .ok_or(Rejection::UnknownWarehouse { warehouse_id: id })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddWarehouse {
    pub warehouse_id: WarehouseId,
    pub name: String,
    pub city: Option<String>,
}

impl AddWarehouse {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        c.text(&self.name, "name", true, NAME_LEN_MAX);
        if let Some(city) = &self.city {
            c.text(city, "city", false, NAME_LEN_MAX);
        }
        c.finish()
    }
}

/// The first warehouse becomes the default.
pub fn add_warehouse(
    state: &Warehouses,
    cmd: &AddWarehouse,
) -> Result<Vec<DomainEvent>, Rejection> {
    if state.get(cmd.warehouse_id).is_some() {
        return Err(Rejection::WarehouseExists {
            warehouse_id: cmd.warehouse_id,
        });
    }
    let name = cmd.name.trim();
    if state.list.iter().any(|w| w.name.eq_ignore_ascii_case(name)) {
        return Err(Rejection::WarehouseNameTaken {
            name: name.to_owned(),
        });
    }
    let mut events: Vec<DomainEvent> = vec![
        WarehouseAdded {
            warehouse_id: cmd.warehouse_id,
            name: name.to_owned(),
            city: cmd
                .city
                .as_ref()
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty()),
        }
        .into(),
    ];
    if state.default.is_none() {
        events.push(
            DefaultWarehouseSet {
                warehouse_id: cmd.warehouse_id,
            }
            .into(),
        );
    }
    Ok(events)
}

pub fn set_default_warehouse(
    state: &Warehouses,
    warehouse_id: WarehouseId,
) -> Result<Vec<DomainEvent>, Rejection> {
    state.require(warehouse_id)?;
    if state.default == Some(warehouse_id) {
        return Ok(Vec::new());
    }
    Ok(vec![DefaultWarehouseSet { warehouse_id }.into()])
}

// -------------------------------------------------------------- catalog

/// How a product's stock is kept (Ngorder `product_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProductKind {
    /// Own stock, counted per warehouse.
    #[serde(rename = "S")]
    Stocked,
    /// Sold from a supplier's stock: not counted, only an in-stock flag.
    #[serde(rename = "R")]
    Supplier,
    /// Preorder: counted, and may be sold below zero.
    #[serde(rename = "PO")]
    Preorder,
}

impl ProductKind {
    /// Whether kedai counts this product's stock.
    pub fn is_tracked(self) -> bool {
        self != ProductKind::Supplier
    }
}

/// Which price a customer gets (Ngorder customer category codes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CustomerCategory {
    /// `N`: a plain customer; pays `price`.
    #[serde(rename = "N")]
    Customer,
    /// `Y`: a reseller; pays `price_reseller`.
    #[serde(rename = "Y")]
    Reseller,
    /// `D`: a dropshipper; pays `price_dropship`.
    #[serde(rename = "D")]
    Dropshipper,
    /// `1`, `2`, `3`: the shop's custom categories; pay `price1..3`.
    #[serde(rename = "1")]
    Custom1,
    #[serde(rename = "2")]
    Custom2,
    #[serde(rename = "3")]
    Custom3,
}

impl CustomerCategory {
    /// Whether wholesale tiers apply to this category.
    pub fn has_wholesale_access(self) -> bool {
        !matches!(
            self,
            CustomerCategory::Reseller | CustomerCategory::Dropshipper
        )
    }

    pub fn code(self) -> &'static str {
        match self {
            CustomerCategory::Customer => "N",
            CustomerCategory::Reseller => "Y",
            CustomerCategory::Dropshipper => "D",
            CustomerCategory::Custom1 => "1",
            CustomerCategory::Custom2 => "2",
            CustomerCategory::Custom3 => "3",
        }
    }
}

/// Selling prices of a variation per customer category.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prices {
    pub price: Money,
    pub price_reseller: Money,
    pub price_dropship: Money,
    pub price1: Option<Money>,
    pub price2: Option<Money>,
    pub price3: Option<Money>,
}

impl Prices {
    /// The same price for everyone.
    pub fn flat(price: Money) -> Prices {
        Prices {
            price,
            price_reseller: price,
            price_dropship: price,
            price1: None,
            price2: None,
            price3: None,
        }
    }

    /// The price a category pays; custom categories without their own
    /// price pay the retail price.
    pub fn for_category(&self, category: CustomerCategory) -> Money {
        match category {
            CustomerCategory::Customer => self.price,
            CustomerCategory::Reseller => self.price_reseller,
            CustomerCategory::Dropshipper => self.price_dropship,
            CustomerCategory::Custom1 => self.price1.unwrap_or(self.price),
            CustomerCategory::Custom2 => self.price2.unwrap_or(self.price),
            CustomerCategory::Custom3 => self.price3.unwrap_or(self.price),
        }
    }

    fn check(&self, c: &mut Check, field: &str) {
        let all = [
            ("price", Some(self.price)),
            ("price_reseller", Some(self.price_reseller)),
            ("price_dropship", Some(self.price_dropship)),
            ("price1", self.price1),
            ("price2", self.price2),
            ("price3", self.price3),
        ];
        for (name, value) in all {
            if let Some(v) = value {
                c.that(
                    !v.is_negative(),
                    format!("{field}.{name}"),
                    "must not be negative",
                );
            }
        }
    }
}

/// A quantity range with its own unit price.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WholesaleTier {
    /// Smallest quantity the tier applies to (at least 2).
    pub from: u32,
    /// Largest quantity, if bounded.
    pub to: Option<u32>,
    pub price: Money,
}

fn check_tiers(tiers: &[WholesaleTier], c: &mut Check, field: &str) {
    let mut last_to: Option<u32> = Some(1);
    for (i, t) in tiers.iter().enumerate() {
        let f = format!("{field}[{i}]");
        c.that(t.from >= 2, format!("{f}.from"), "must be at least 2");
        c.that(
            t.to.is_none_or(|to| to >= t.from),
            format!("{f}.to"),
            "must not be below from",
        );
        c.that(
            !t.price.is_negative(),
            format!("{f}.price"),
            "must not be negative",
        );
        match last_to {
            Some(prev) => c.that(
                t.from > prev,
                format!("{f}.from"),
                "tiers must be in order and must not overlap",
            ),
            None => c.that(
                false,
                format!("{f}.from"),
                "follows a tier without an upper bound",
            ),
        };
        last_to = t.to;
    }
}

/// One variation (SKU) of a product.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariationSpec {
    pub sku: Sku,
    /// Option values, e.g. `size: M`, `color: merah`.
    pub options: BTreeMap<String, String>,
    pub weight_grams: u32,
    pub prices: Prices,
    /// Cost price (`price_buy`), for cost of goods sold.
    pub cost: Money,
    pub wholesale: Vec<WholesaleTier>,
    /// For products of type `R`: whether the supplier has it.
    pub in_stock: bool,
}

impl VariationSpec {
    fn check(&self, c: &mut Check, field: &str) {
        self.prices.check(c, &format!("{field}.prices"));
        c.that(
            !self.cost.is_negative(),
            format!("{field}.cost"),
            "must not be negative",
        );
        c.that(
            self.options.len() <= 10,
            format!("{field}.options"),
            "at most 10 options",
        );
        for (k, v) in &self.options {
            c.that(
                !k.trim().is_empty() && k.len() <= 50,
                format!("{field}.options"),
                "option names are 1 to 50 characters",
            );
            c.that(
                v.len() <= 100,
                format!("{field}.options.{k}"),
                "must be at most 100 characters",
            );
        }
        check_tiers(&self.wholesale, c, &format!("{field}.wholesale"));
    }

    /// The unit price for `category` buying `quantity`.
    pub fn unit_price(&self, category: CustomerCategory, quantity: i64) -> Money {
        let base = self.prices.for_category(category);
        if !category.has_wholesale_access() {
            return base;
        }
        self.wholesale
            .iter()
            .find(|t| {
                quantity >= i64::from(t.from) && t.to.is_none_or(|to| quantity <= i64::from(to))
            })
            .map_or(base, |t| t.price)
    }

    /// A label such as `M / merah` from the option values.
    pub fn label(&self) -> String {
        self.options
            .values()
            .cloned()
            .collect::<Vec<_>>()
            .join(" / ")
    }
}

/// A product as its stream knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Product {
    pub created: Option<ProductCreated>,
}

impl Product {
    pub fn evolve(&mut self, event: &DomainEvent) {
        let Some(p) = &mut self.created else {
            if let DomainEvent::ProductCreated(e) = event {
                self.created = Some((**e).clone());
            }
            return;
        };
        match event {
            DomainEvent::VariationAdded(e) => p.variations.push(e.variation.clone()),
            DomainEvent::PricesChanged(e) => {
                if let Some(v) = p.variations.iter_mut().find(|v| v.sku == e.sku) {
                    v.prices = e.prices.clone();
                }
            }
            DomainEvent::CostChanged(e) => {
                if let Some(v) = p.variations.iter_mut().find(|v| v.sku == e.sku) {
                    v.cost = e.cost;
                }
            }
            DomainEvent::WholesaleTiersSet(e) => {
                if let Some(v) = p.variations.iter_mut().find(|v| v.sku == e.sku) {
                    v.wholesale = e.tiers.clone();
                }
            }
            DomainEvent::SupplierStockSet(e) => {
                if let Some(v) = p.variations.iter_mut().find(|v| v.sku == e.sku) {
                    v.in_stock = e.in_stock;
                }
            }
            _ => {}
        }
    }

    pub fn variation(&self, sku: &Sku) -> Option<&VariationSpec> {
        self.created
            .as_ref()?
            .variations
            .iter()
            .find(|v| &v.sku == sku)
    }
}

/// Which product a SKU belongs to (the `sku-` stream).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SkuOwner {
    pub product_id: Option<ProductId>,
}

impl SkuOwner {
    pub fn evolve(&mut self, event: &DomainEvent) {
        if let DomainEvent::SkuClaimed(e) = event {
            self.product_id = Some(e.product_id);
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateProduct {
    pub product_id: ProductId,
    pub name: String,
    pub category: Option<String>,
    pub kind: ProductKind,
    pub preorder_days: Option<u32>,
    pub variations: Vec<VariationSpec>,
}

impl CreateProduct {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        c.text(&self.name, "name", true, NAME_LEN_MAX);
        if let Some(cat) = &self.category {
            c.text(cat, "category", false, NAME_LEN_MAX);
        }
        c.that(
            !self.variations.is_empty(),
            "variations",
            "a product needs at least one variation",
        )
        .that(
            self.variations.len() <= VARIATIONS_MAX,
            "variations",
            format!("at most {VARIATIONS_MAX}"),
        );
        match (self.kind, self.preorder_days) {
            (ProductKind::Preorder, Some(d)) => {
                c.that(
                    (1..=PREORDER_DAYS_MAX).contains(&d),
                    "preorder_days",
                    format!("must be 1 to {PREORDER_DAYS_MAX}"),
                );
            }
            (ProductKind::Preorder, None) => {
                c.that(false, "preorder_days", "required for a preorder product");
            }
            (_, Some(_)) => {
                c.that(
                    false,
                    "preorder_days",
                    "only for preorder products (kind PO)",
                );
            }
            (_, None) => {}
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, v) in self.variations.iter().enumerate() {
            v.check(&mut c, &format!("variations[{i}]"));
            c.that(
                seen.insert(&v.sku),
                format!("variations[{i}].sku"),
                "appears twice in this product",
            );
        }
        c.finish()
    }
}

/// Decides a new product. The caller appends [`SkuClaimed`] to each SKU's
/// stream with "no stream" expected: that is what makes SKUs unique, and a
/// SKU already claimed surfaces as [`Rejection::SkuTaken`] from
/// `owners` here.
pub fn create_product(
    product: &Product,
    owners: &[(Sku, SkuOwner)],
    cmd: &CreateProduct,
) -> Result<Vec<DomainEvent>, Rejection> {
    if product.created.is_some() {
        return Err(Rejection::ProductExists {
            product_id: cmd.product_id,
        });
    }
    if let Some((sku, _)) = owners.iter().find(|(_, o)| o.product_id.is_some()) {
        return Err(Rejection::SkuTaken { sku: sku.clone() });
    }
    Ok(vec![
        ProductCreated {
            product_id: cmd.product_id,
            name: cmd.name.trim().to_owned(),
            category: cmd
                .category
                .as_ref()
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty()),
            kind: cmd.kind,
            preorder_days: cmd.preorder_days,
            variations: cmd.variations.clone(),
        }
        .into(),
    ])
}

/// The events for the `sku-` streams of a new product or variation.
pub fn claim_skus(product_id: ProductId, skus: &[Sku]) -> Vec<(Sku, DomainEvent)> {
    skus.iter()
        .map(|sku| {
            (
                sku.clone(),
                SkuClaimed {
                    sku: sku.clone(),
                    product_id,
                }
                .into(),
            )
        })
        .collect()
}

/// Changes to an existing product's variations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum ProductChange {
    AddVariation { variation: VariationSpec },
    SetPrices { sku: Sku, prices: Prices },
    SetCost { sku: Sku, cost: Money },
    SetWholesale { sku: Sku, tiers: Vec<WholesaleTier> },
    SetSupplierStock { sku: Sku, in_stock: bool },
}

impl ProductChange {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        match self {
            ProductChange::AddVariation { variation } => variation.check(&mut c, "variation"),
            ProductChange::SetPrices { prices, .. } => prices.check(&mut c, "prices"),
            ProductChange::SetCost { cost, .. } => {
                c.that(!cost.is_negative(), "cost", "must not be negative");
            }
            ProductChange::SetWholesale { tiers, .. } => check_tiers(tiers, &mut c, "tiers"),
            ProductChange::SetSupplierStock { .. } => {}
        }
        c.finish()
    }

    /// The SKU the change concerns.
    pub fn sku(&self) -> &Sku {
        match self {
            ProductChange::AddVariation { variation } => &variation.sku,
            ProductChange::SetPrices { sku, .. }
            | ProductChange::SetCost { sku, .. }
            | ProductChange::SetWholesale { sku, .. }
            | ProductChange::SetSupplierStock { sku, .. } => sku,
        }
    }
}

/// Decides a change to a product. For a new variation the caller claims
/// its SKU as for [`create_product`]; `owner` is that SKU's claim.
pub fn change_product(
    product: &Product,
    product_id: ProductId,
    owner: &SkuOwner,
    change: &ProductChange,
) -> Result<Vec<DomainEvent>, Rejection> {
    let Some(p) = &product.created else {
        return Err(Rejection::UnknownProduct { product_id });
    };
    let sku = change.sku().clone();
    if let ProductChange::AddVariation { variation } = change {
        if owner.product_id.is_some() || p.variations.iter().any(|v| v.sku == variation.sku) {
            return Err(Rejection::SkuTaken { sku });
        }
        return Ok(vec![
            VariationAdded {
                product_id,
                variation: variation.clone(),
            }
            .into(),
        ]);
    }
    if product.variation(&sku).is_none() {
        return Err(Rejection::UnknownSku { sku });
    }
    let event: DomainEvent = match change.clone() {
        ProductChange::AddVariation { .. } => unreachable!("handled above"),
        ProductChange::SetPrices { prices, .. } => PricesChanged {
            product_id,
            sku,
            prices,
        }
        .into(),
        ProductChange::SetCost { cost, .. } => CostChanged {
            product_id,
            sku,
            cost,
        }
        .into(),
        ProductChange::SetWholesale { tiers, .. } => WholesaleTiersSet {
            product_id,
            sku,
            tiers,
        }
        .into(),
        ProductChange::SetSupplierStock { in_stock, .. } => SupplierStockSet {
            product_id,
            sku,
            in_stock,
        }
        .into(),
    };
    Ok(vec![event])
}

// ------------------------------------------------------------ customers

/// A customer as their stream knows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Customer {
    pub details: Option<CustomerDetails>,
}

impl Customer {
    pub fn evolve(&mut self, event: &DomainEvent) {
        match event {
            DomainEvent::CustomerRegistered(e) => self.details = Some(e.details.clone()),
            DomainEvent::CustomerUpdated(e) => self.details = Some(e.details.clone()),
            _ => {}
        }
    }
}

impl CustomerDetails {
    /// Checks the fields and normalises the phone number for a shop in
    /// `currency`'s country.
    pub fn validated(mut self, currency: Currency) -> Result<CustomerDetails, Vec<FieldError>> {
        let mut c = Check::new();
        c.text(&self.name, "name", true, NAME_LEN_MAX);
        for (field, value) in [
            ("address", &self.address),
            ("district", &self.district),
            ("city", &self.city),
            ("province", &self.province),
        ] {
            if let Some(v) = value {
                c.text(v, field, false, NAME_LEN_MAX);
            }
        }
        if let Some(email) = &self.email {
            c.that(
                email.len() <= 254 && email.contains('@') && !email.contains(char::is_whitespace),
                "email",
                "is not an email address",
            );
        }
        if let Some(code) = &self.postal_code {
            c.that(
                !code.is_empty() && code.len() <= 10 && code.chars().all(|ch| ch.is_ascii_digit()),
                "postal_code",
                "must be up to 10 digits",
            );
        }
        if let Some(phone) = &self.phone {
            match normalize_phone(phone, currency) {
                Ok(p) => self.phone = Some(p),
                Err(why) => c.push(FieldError::new("phone", why)),
            }
        }
        c.finish()?;
        self.name = self.name.trim().to_owned();
        Ok(self)
    }
}

/// Normalises a phone number to digits starting with the country code
/// (`62` Indonesia, `60` Malaysia): `0812-3456-7890`, `+62 812 3456 7890`
/// and `8123456789` (Indonesian mobile without its 0) all become
/// `62812...`. Between 10 and 15 digits.
pub fn normalize_phone(raw: &str, currency: Currency) -> Result<String, String> {
    let country = match currency {
        Currency::Idr => "62",
        Currency::Myr => "60",
    };
    let mut digits = String::with_capacity(raw.len());
    for (i, ch) in raw.trim().chars().enumerate() {
        match ch {
            '0'..='9' => digits.push(ch),
            '+' if i == 0 => {}
            ' ' | '-' | '(' | ')' | '.' => {}
            _ => return Err(format!("{raw:?} is not a phone number")),
        }
    }
    let normalized = if let Some(rest) = digits.strip_prefix('0') {
        format!("{country}{rest}")
    } else if digits.starts_with("62") || digits.starts_with("60") {
        digits
    } else if currency == Currency::Idr && digits.starts_with('8') {
        format!("62{digits}")
    } else {
        return Err(format!(
            "{raw:?} has no country code; write it as 62... or 60..."
        ));
    };
    if !(10..=15).contains(&normalized.len()) {
        return Err(format!(
            "{raw:?} is not a phone number (10 to 15 digits with the country code)"
        ));
    }
    Ok(normalized)
}

pub fn register_customer(
    customer: &Customer,
    customer_id: CustomerId,
    details: CustomerDetails,
) -> Result<Vec<DomainEvent>, Rejection> {
    if customer.details.is_some() {
        return Err(Rejection::CustomerExists { customer_id });
    }
    Ok(vec![
        CustomerRegistered {
            customer_id,
            details,
        }
        .into(),
    ])
}

pub fn update_customer(
    customer: &Customer,
    customer_id: CustomerId,
    details: CustomerDetails,
) -> Result<Vec<DomainEvent>, Rejection> {
    if customer.details.is_none() {
        return Err(Rejection::UnknownCustomer { customer_id });
    }
    if customer.details.as_ref() == Some(&details) {
        return Ok(Vec::new());
    }
    Ok(vec![
        CustomerUpdated {
            customer_id,
            details,
        }
        .into(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variation(sku: &str, price: i64) -> VariationSpec {
        VariationSpec {
            sku: Sku::parse(sku).unwrap(),
            options: BTreeMap::from([("size".into(), "M".into())]),
            weight_grams: 200,
            prices: Prices {
                price: Money(price),
                price_reseller: Money(price * 8 / 10),
                price_dropship: Money(price * 9 / 10),
                price1: Some(Money(price - 1_000)),
                price2: None,
                price3: None,
            },
            cost: Money(price / 2),
            wholesale: vec![WholesaleTier {
                from: 10,
                to: Some(49),
                price: Money(price - 5_000),
            }],
            in_stock: true,
        }
    }

    #[test]
    fn each_category_gets_its_price_and_wholesale_only_where_allowed() {
        let v = variation("KAOS-M", 50_000);
        assert_eq!(v.unit_price(CustomerCategory::Customer, 1), Money(50_000));
        assert_eq!(v.unit_price(CustomerCategory::Reseller, 1), Money(40_000));
        assert_eq!(
            v.unit_price(CustomerCategory::Dropshipper, 1),
            Money(45_000)
        );
        assert_eq!(v.unit_price(CustomerCategory::Custom1, 1), Money(49_000));
        assert_eq!(
            v.unit_price(CustomerCategory::Custom2, 1),
            Money(50_000),
            "no price2: retail"
        );
        assert_eq!(
            v.unit_price(CustomerCategory::Customer, 10),
            Money(45_000),
            "wholesale tier"
        );
        assert_eq!(
            v.unit_price(CustomerCategory::Customer, 50),
            Money(50_000),
            "above the tier"
        );
        assert_eq!(
            v.unit_price(CustomerCategory::Reseller, 10),
            Money(40_000),
            "resellers: no wholesale"
        );
    }

    #[test]
    fn phones_are_normalised() {
        assert_eq!(
            normalize_phone("0812-3456-7890", Currency::Idr).unwrap(),
            "6281234567890"
        );
        assert_eq!(
            normalize_phone("+62 812 3456 7890", Currency::Idr).unwrap(),
            "6281234567890"
        );
        assert_eq!(
            normalize_phone("81234567890", Currency::Idr).unwrap(),
            "6281234567890"
        );
        assert_eq!(
            normalize_phone("012-345 6789", Currency::Myr).unwrap(),
            "60123456789"
        );
        assert!(normalize_phone("12345", Currency::Idr).is_err());
        assert!(normalize_phone("0812abc", Currency::Idr).is_err());
    }

    #[test]
    fn the_first_warehouse_becomes_the_default_and_names_are_unique() {
        let mut state = Warehouses::default();
        let malang = AddWarehouse {
            warehouse_id: WarehouseId(uuid::Uuid::from_u128(1)),
            name: "Gudang Malang".into(),
            city: None,
        };
        let events = add_warehouse(&state, &malang).unwrap();
        assert_eq!(events.len(), 2);
        events.iter().for_each(|e| state.evolve(e));
        assert_eq!(state.default, Some(malang.warehouse_id));
        let again = AddWarehouse {
            warehouse_id: WarehouseId(uuid::Uuid::from_u128(2)),
            name: "gudang malang".into(),
            city: None,
        };
        assert!(matches!(
            add_warehouse(&state, &again),
            Err(Rejection::WarehouseNameTaken { .. })
        ));
        let surabaya = AddWarehouse {
            warehouse_id: WarehouseId(uuid::Uuid::from_u128(3)),
            name: "Gudang Surabaya".into(),
            city: Some("Surabaya".into()),
        };
        let events = add_warehouse(&state, &surabaya).unwrap();
        assert_eq!(events.len(), 1, "the default stays");
    }

    #[test]
    fn product_validation_names_fields() {
        let mut cmd = CreateProduct {
            product_id: ProductId(uuid::Uuid::from_u128(1)),
            name: " ".into(),
            category: None,
            kind: ProductKind::Preorder,
            preorder_days: None,
            variations: vec![variation("A", 1000), variation("A", 1000)],
        };
        cmd.variations[1].prices.price = Money(-1);
        let errors = cmd.validate().unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"name"));
        assert!(fields.contains(&"preorder_days"));
        assert!(fields.contains(&"variations[1].prices.price"));
        assert!(fields.contains(&"variations[1].sku"));
    }
}

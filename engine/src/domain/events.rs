//! Every domain event, past tense, and their encoding.
//!
//! Each event is a struct; [`DomainEvent`] is the closed set of them. In the
//! log an event is its type name (`OrderPlaced`) in the envelope and its
//! struct in the payload as a MessagePack array of its fields, in
//! declaration order (ADR 0004). Logs written before that hold maps with
//! the field names as keys, and are read as well. Readers skip types they
//! do not know ([`DomainEvent::decode`] answers `None`), so old readers
//! survive new events.
//!
//! How an event's struct may change: a field is added at the end only,
//! with `#[serde(default)]`, so payloads written before it still decode;
//! no field is removed, reordered or changes type. A build cannot read a
//! payload with fields it does not have: it fails with an error (a test
//! below shows it never misreads one), so every node that reads the log
//! must run a build that knows a new field before any node writes it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::catalog::{CustomerCategory, Prices, ProductKind, VariationSpec, WholesaleTier};
use super::chat::{Attachment, ChatChannel, ImportedMessage};
use super::checkout::CheckoutContent;
use super::ids::{CustomerId, OrderId, PaymentId, ProductId, Sku, TransferId, WarehouseId};
use super::money::{BasisPoints, Currency, Money};
use super::order::{
    AppliedCost, Channel, CustomerSnapshot, PaymentMethod, PlacedLine, Shipping, Totals,
};
use super::stock::RemovalReason;
use super::wallet::LedgerTransaction;
use super::webhook::Trigger;
use crate::event::{Position, Timestamp};

/// Schema version of every event type defined here.
pub const SCHEMA_VERSION: u16 = 1;

macro_rules! domain_events {
    (@payload $name:ident) => { $name };
    (@payload $name:ident boxed) => { Box<$name> };
    ($($name:ident $(($boxed:ident))?),* $(,)?) => {
        /// Every event the domain records. Variants differ in size: the
        /// few big ones (an order with its lines and customers, a
        /// checkout's cart) and the rare ones bigger than the common
        /// events (a customer's record, a product's variation) are boxed,
        /// so the event is about a quarter of what it would be, and every
        /// small event that is moved (decoded, queued, handed to the
        /// projections) moves that much less; the others are held inline,
        /// as boxing them would cost an allocation for every small event.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum DomainEvent {
            $($name(domain_events!(@payload $name $($boxed)?)),)*
        }

        impl DomainEvent {
            /// The type name stored in the envelope.
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(DomainEvent::$name(_) => stringify!($name),)*
                }
            }

            /// The payload bytes (a MessagePack array of the struct's
            /// fields, in declaration order).
            pub fn encode(&self) -> Vec<u8> {
                match self {
                    $(DomainEvent::$name(e) => rmp_serde::to_vec(e),)*
                }
                .expect("domain events always encode")
            }

            /// Decodes a payload of the given type; `Ok(None)` for a type
            /// this build does not know.
            /// The commonest types are read field by field when they have
            /// the shape this build writes ([`super::fields`]); serde
            /// reads everything else and has the last word.
            pub fn decode(event_type: &str, payload: &[u8]) -> Result<Option<DomainEvent>, DecodeError> {
                DomainEvent::decode_raw(event_type.as_bytes(), payload)
            }

            /// [`DomainEvent::decode`] of a type given as the bytes of its
            /// name, as an envelope stores them: a reader of the log (a
            /// fold) need not check them as UTF-8 first, since the hot
            /// types are found by their bytes. A name that is not UTF-8 is
            /// an error.
            pub fn decode_raw(event_type: &[u8], payload: &[u8]) -> Result<Option<DomainEvent>, DecodeError> {
                if let Some(event) = super::fields::read_event(event_type, payload) {
                    return Ok(Some(event));
                }
                match std::str::from_utf8(event_type) {
                    Ok(name) => DomainEvent::decode_serde(name, payload),
                    Err(_) => Err(DecodeError {
                        event_type: String::from_utf8_lossy(event_type).into_owned(),
                        reason: "the type's name is not UTF-8".to_owned(),
                    }),
                }
            }

            /// Decodes a payload with serde alone (what [`DomainEvent::decode`]
            /// falls back to, and what its field-by-field readers are
            /// checked against).
            pub fn decode_serde(event_type: &str, payload: &[u8]) -> Result<Option<DomainEvent>, DecodeError> {
                let event = match event_type {
                    $(stringify!($name) => DomainEvent::$name(
                        rmp_serde::from_slice(payload).map_err(|e| DecodeError {
                            event_type: event_type.to_owned(),
                            reason: e.to_string(),
                        })?,
                    ),)*
                    _ => return Ok(None),
                };
                Ok(Some(event))
            }

            /// Every event type name this build knows.
            pub const TYPES: &'static [&'static str] = &[$(stringify!($name),)*];
        }

        /// An event serialises as its payload (the struct), without its
        /// type name: the envelope carries that.
        impl Serialize for DomainEvent {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                match self {
                    $(DomainEvent::$name(e) => e.serialize(s),)*
                }
            }
        }

        $(
            impl From<$name> for DomainEvent {
                fn from(e: $name) -> DomainEvent {
                    DomainEvent::$name(e.into())
                }
            }
        )*
    };
}

/// A payload that does not decode as its type says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event of type {event_type} does not decode: {reason}")]
pub struct DecodeError {
    pub event_type: String,
    pub reason: String,
}

domain_events! {
    ShopCreated(boxed),
    ShopSettingsChanged,
    WarehouseAdded,
    DefaultWarehouseSet,
    ProductCreated(boxed),
    VariationAdded(boxed),
    PricesChanged(boxed),
    CostChanged,
    WholesaleTiersSet,
    SupplierStockSet,
    SkuClaimed,
    CustomerRegistered(boxed),
    CustomerUpdated(boxed),
    StockReceived,
    StockRemoved,
    StockTransferredOut(boxed),
    StockTransferredIn(boxed),
    StockCounted,
    StockReserved,
    StockReleased,
    StockShipped,
    StockRestocked,
    OrderPlaced(boxed),
    OrderPaymentRecorded,
    OrderProcessing,
    OrderPacked,
    OrderReadyForPickup,
    OrderShipped,
    OrderDelivered,
    OrderCompleted,
    OrderCancelled,
    OrderReturnStarted,
    OrderReturnReceived,
    OrderLost,
    OrderRefunded,
    LedgerTransactionRecorded(boxed),
    WithdrawalRequested(boxed),
    WithdrawalReviewed,
    WithdrawalCompleted,
    WithdrawalRejected,
    WithdrawalCanceled,
    ExpenseRecorded,
    ExpenseVoided,
    CheckoutStarted(boxed),
    CheckoutUpdated(boxed),
    CheckoutCompleted,
    CheckoutAbandoned,
    ConversationStarted,
    MessageReceived,
    MessageSent(boxed),
    MessagesImported,
    ConversationLabelAdded,
    ConversationLabelRemoved,
    ConversationAssigned,
    ConversationUnassigned,
    ConversationResolved,
    ConversationReopened,
    MessageQueued,
    MessageDispatched,
    MessageDispatchFailed,
    TemplateSaved,
    TemplateDeleted,
    ApiKeyIssued,
    ApiKeyRevoked,
    WebhookSubscribed(boxed),
    WebhookPaused,
    WebhookResumed,
    WebhookSecretRotated,
    WebhookDisabled,
    WebhookDeleted,
    WebhookDelivered,
    WebhookAttemptFailed(boxed),
}

// ---------------------------------------------------------------- shop

/// A shop was opened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopCreated {
    pub name: String,
    pub currency: Currency,
    /// IANA time zone name for reports, e.g. `Asia/Jakarta`.
    pub time_zone: String,
    /// Offset of that zone from UTC in minutes (420 for Asia/Jakarta):
    /// Indonesia and Malaysia keep no daylight saving time.
    pub utc_offset_minutes: i32,
    pub settings: ShopSettings,
}

/// Settings a shop owner can change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopSettings {
    /// Smallest withdrawal (Ngorder: Rp50.000).
    pub withdrawal_min: Money,
    /// Fee charged per withdrawal.
    pub withdrawal_fee: Money,
    /// COD fee on (subtotal + shipping), Komship: 2.8%.
    pub cod_fee_rate: BasisPoints,
    /// Courier cashback on shipping cost, per courier code (`JNE`: 25%).
    pub courier_cashback: BTreeMap<String, BasisPoints>,
    /// A checkout not completed within this many minutes is abandoned.
    pub checkout_abandon_minutes: u32,
    /// Stock at or below this is "low" in the low-stock list.
    pub low_stock_threshold: i64,
}

/// The shop's settings were replaced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopSettingsChanged {
    pub settings: ShopSettings,
}

// ----------------------------------------------------------- warehouses

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarehouseAdded {
    pub warehouse_id: WarehouseId,
    pub name: String,
    pub city: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultWarehouseSet {
    pub warehouse_id: WarehouseId,
}

// -------------------------------------------------------------- catalog

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductCreated {
    pub product_id: ProductId,
    pub name: String,
    pub category: Option<String>,
    pub kind: ProductKind,
    /// Lead time of a preorder product, in days.
    pub preorder_days: Option<u32>,
    pub variations: Vec<VariationSpec>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariationAdded {
    pub product_id: ProductId,
    pub variation: VariationSpec,
}

/// New selling prices for one SKU, from this moment on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricesChanged {
    pub product_id: ProductId,
    pub sku: Sku,
    pub prices: Prices,
}

/// A new cost price (`price_buy`) for one SKU, from this moment on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostChanged {
    pub product_id: ProductId,
    pub sku: Sku,
    pub cost: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WholesaleTiersSet {
    pub product_id: ProductId,
    pub sku: Sku,
    pub tiers: Vec<WholesaleTier>,
}

/// Whether the supplier has a SKU of a product of type `R` in stock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupplierStockSet {
    pub product_id: ProductId,
    pub sku: Sku,
    pub in_stock: bool,
}

/// A SKU now belongs to a product (the first event of a `sku-` stream).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuClaimed {
    pub sku: Sku,
    pub product_id: ProductId,
}

// ------------------------------------------------------------ customers

/// Contact and address details of a customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerDetails {
    pub name: String,
    /// Normalised: country code first, digits only (`628212345678`).
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<String>,
    pub district: Option<String>,
    pub city: Option<String>,
    pub province: Option<String>,
    pub postal_code: Option<String>,
    pub category: CustomerCategory,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerRegistered {
    pub customer_id: CustomerId,
    pub details: CustomerDetails,
}

/// A customer's details were replaced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerUpdated {
    pub customer_id: CustomerId,
    pub details: CustomerDetails,
}

// ---------------------------------------------------------------- stock

/// Goods arrived in a warehouse (Ngorder ADD).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReceived {
    pub sku: Sku,
    pub warehouse_id: WarehouseId,
    pub quantity: i64,
    pub note: String,
}

/// Goods left a warehouse other than by an order (Ngorder SUB).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRemoved {
    pub sku: Sku,
    pub warehouse_id: WarehouseId,
    pub quantity: i64,
    pub reason: RemovalReason,
    pub note: String,
}

/// The sending half of a transfer (recorded atomically with the other).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockTransferredOut {
    pub sku: Sku,
    pub warehouse_id: WarehouseId,
    pub to_warehouse_id: WarehouseId,
    pub transfer_id: TransferId,
    pub quantity: i64,
    pub note: String,
}

/// The receiving half of a transfer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockTransferredIn {
    pub sku: Sku,
    pub warehouse_id: WarehouseId,
    pub from_warehouse_id: WarehouseId,
    pub transfer_id: TransferId,
    pub quantity: i64,
    pub note: String,
}

/// An absolute count (Ngorder "sync stock"); `delta` is counted minus the
/// on-hand quantity before the count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockCounted {
    pub sku: Sku,
    pub warehouse_id: WarehouseId,
    pub counted: i64,
    pub delta: i64,
    pub note: String,
}

/// Stock held for an order (placed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReserved {
    pub sku: Sku,
    pub warehouse_id: WarehouseId,
    pub order_id: OrderId,
    pub quantity: i64,
}

/// A reservation let go (order cancelled).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReleased {
    pub sku: Sku,
    pub warehouse_id: WarehouseId,
    pub order_id: OrderId,
    pub quantity: i64,
}

/// Reserved goods left with the courier: on hand and reserved both fall.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockShipped {
    pub sku: Sku,
    pub warehouse_id: WarehouseId,
    pub order_id: OrderId,
    pub quantity: i64,
}

/// A returned parcel's goods are back on the shelf.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRestocked {
    pub sku: Sku,
    pub warehouse_id: WarehouseId,
    pub order_id: OrderId,
    pub quantity: i64,
}

// --------------------------------------------------------------- orders

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: OrderId,
    pub channel: Channel,
    /// Sales channel within the shop (Ngorder "order source").
    pub order_source: Option<String>,
    /// Who the order is from (a reseller or dropshipper shown on the label,
    /// or the buyer); their category sets the prices.
    pub sender: CustomerSnapshot,
    /// Who receives the parcel.
    pub receiver: CustomerSnapshot,
    pub lines: Vec<PlacedLine>,
    pub shipping: Shipping,
    pub cod: bool,
    pub costs: Vec<AppliedCost>,
    pub totals: Totals,
    pub note: Option<String>,
    pub placed_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPaymentRecorded {
    pub order_id: OrderId,
    pub payment_id: PaymentId,
    pub amount: Money,
    pub method: PaymentMethod,
    pub bank_account: Option<String>,
    pub paid_at: Timestamp,
    /// Paid so far, this payment included.
    pub paid_total: Money,
    pub remaining: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderProcessing {
    pub order_id: OrderId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPacked {
    pub order_id: OrderId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderReadyForPickup {
    pub order_id: OrderId,
}

/// The parcel is with the courier; `awb` is the air waybill (resi).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderShipped {
    pub order_id: OrderId,
    pub awb: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderDelivered {
    pub order_id: OrderId,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCompleted {
    pub order_id: OrderId,
}

/// Cancelled before shipping: reservations are released (in the same
/// append) and what was paid becomes refundable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCancelled {
    pub order_id: OrderId,
    pub reason: String,
    pub refundable: Money,
}

/// The parcel is on its way back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderReturnStarted {
    pub order_id: OrderId,
    pub reason: String,
}

/// The returned parcel arrived; its goods are restocked in the same append.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderReturnReceived {
    pub order_id: OrderId,
}

/// The courier lost the parcel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLost {
    pub order_id: OrderId,
    pub note: String,
}

/// Money paid for the order was given back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRefunded {
    pub order_id: OrderId,
    pub amount: Money,
    pub note: String,
}

// --------------------------------------------------------------- wallet

/// A balanced ledger transaction of the seller's wallet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerTransactionRecorded {
    pub transaction_id: uuid::Uuid,
    pub transaction: LedgerTransaction,
    pub occurred_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalRequested {
    pub withdrawal_id: uuid::Uuid,
    pub amount: Money,
    pub fee: Money,
    pub bank_name: String,
    pub bank_account_no: String,
    pub bank_account_name: String,
    pub note: String,
    /// The available balance before the request (Komship's beginning
    /// balance).
    pub available_before: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalReviewed {
    pub withdrawal_id: uuid::Uuid,
    pub note: String,
}

/// Paid out; `transfer_reference` is the bank transfer's reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalCompleted {
    pub withdrawal_id: uuid::Uuid,
    pub transfer_reference: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalRejected {
    pub withdrawal_id: uuid::Uuid,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalCanceled {
    pub withdrawal_id: uuid::Uuid,
    pub reason: String,
}

/// An expense (Ngorder expenses): `total = amount x quantity`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpenseRecorded {
    pub expense_id: uuid::Uuid,
    pub title: String,
    pub amount: Money,
    pub quantity: i64,
    pub total: Money,
    pub date: chrono::NaiveDate,
    pub note: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpenseVoided {
    pub expense_id: uuid::Uuid,
    pub reason: String,
}

// ------------------------------------------------------------- checkout

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutStarted {
    pub checkout_id: uuid::Uuid,
    pub domain: String,
    pub currency: Currency,
    pub content: CheckoutContent,
    pub total: Money,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutUpdated {
    pub checkout_id: uuid::Uuid,
    pub content: CheckoutContent,
    pub total: Money,
    pub updated_at: Timestamp,
}

/// The checkout became an order (placed in the same append).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutCompleted {
    pub checkout_id: uuid::Uuid,
    pub order_id: OrderId,
    pub completed_at: Timestamp,
}

/// Not completed within the shop's abandonment time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutAbandoned {
    pub checkout_id: uuid::Uuid,
    pub abandoned_at: Timestamp,
    pub last_activity_at: Timestamp,
}

// ----------------------------------------------------------------- chat

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationStarted {
    pub conversation_id: uuid::Uuid,
    pub channel: ChatChannel,
    pub handle: String,
    pub name: String,
    pub customer_id: Option<CustomerId>,
    pub started_at: Timestamp,
}

/// A message from the customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageReceived {
    pub conversation_id: uuid::Uuid,
    pub message_id: uuid::Uuid,
    pub text: String,
    pub attachment: Option<Attachment>,
    pub sent_at: Timestamp,
}

/// A message from staff (`staff_id`), possibly filled from a template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageSent {
    pub conversation_id: uuid::Uuid,
    pub message_id: uuid::Uuid,
    pub staff_id: String,
    pub text: String,
    pub attachment: Option<Attachment>,
    pub template_id: Option<uuid::Uuid>,
    pub sent_at: Timestamp,
}

/// Recent history brought in when a channel is activated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagesImported {
    pub conversation_id: uuid::Uuid,
    pub messages: Vec<ImportedMessage>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationLabelAdded {
    pub conversation_id: uuid::Uuid,
    pub label: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationLabelRemoved {
    pub conversation_id: uuid::Uuid,
    pub label: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationAssigned {
    pub conversation_id: uuid::Uuid,
    pub staff_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationUnassigned {
    pub conversation_id: uuid::Uuid,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationResolved {
    pub conversation_id: uuid::Uuid,
    pub resolved_by: String,
    pub resolved_at: Timestamp,
}

/// A customer wrote to a resolved conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationReopened {
    pub conversation_id: uuid::Uuid,
}

/// An outbound message waits in the outbox for the channel's sender (it
/// follows the `MessageSent` of the same message, in the same append).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageQueued {
    pub conversation_id: uuid::Uuid,
    pub message_id: uuid::Uuid,
    pub channel: ChatChannel,
    /// Where it goes: the normalised WhatsApp number (`62...`, `60...`).
    pub to: String,
    pub queued_at: Timestamp,
}

/// The channel's gateway accepted a queued message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDispatched {
    pub conversation_id: uuid::Uuid,
    pub message_id: uuid::Uuid,
    /// Attempts it took, this one included.
    pub attempts: u32,
    /// The gateway's id for the message, if it gave one.
    pub gateway_message_id: Option<String>,
    pub dispatched_at: Timestamp,
}

/// The sender gave up on a queued message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageDispatchFailed {
    pub conversation_id: uuid::Uuid,
    pub message_id: uuid::Uuid,
    pub attempts: u32,
    /// The last answer or error, for people.
    pub reason: String,
    pub failed_at: Timestamp,
}

/// A message template was created or changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateSaved {
    pub template_id: uuid::Uuid,
    pub name: String,
    pub body: String,
    pub placeholders: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateDeleted {
    pub template_id: uuid::Uuid,
}

// --------------------------------------------------------------- access

/// An API key was issued; only the hash of its secret is recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyIssued {
    pub key_id: uuid::Uuid,
    pub role: crate::event::Role,
    pub label: String,
    pub hash: String,
    pub issued_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRevoked {
    pub key_id: uuid::Uuid,
    pub revoked_at: Timestamp,
}

// ------------------------------------------------------------- webhooks

/// A callback URL subscribed to triggers. The secret signs deliveries; the
/// API shows it only when it is made (and the event feeds redact it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSubscribed {
    pub webhook_id: uuid::Uuid,
    pub name: String,
    pub url: String,
    pub triggers: Vec<Trigger>,
    pub secret: String,
    pub subscribed_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookPaused {
    pub webhook_id: uuid::Uuid,
    pub paused_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookResumed {
    pub webhook_id: uuid::Uuid,
    pub resumed_at: Timestamp,
}

/// Deliveries from now on are signed with the new secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSecretRotated {
    pub webhook_id: uuid::Uuid,
    pub secret: String,
    pub rotated_at: Timestamp,
}

/// kedai stopped the subscription: the delivery of the event at
/// `event_position` failed for longer than the retry bound.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDisabled {
    pub webhook_id: uuid::Uuid,
    pub reason: String,
    pub delivery_id: uuid::Uuid,
    pub event_position: Position,
    pub disabled_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDeleted {
    pub webhook_id: uuid::Uuid,
    pub deleted_at: Timestamp,
}

/// The receiver answered 2xx to a delivery (in the subscription's
/// deliveries stream).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivered {
    pub webhook_id: uuid::Uuid,
    pub delivery_id: uuid::Uuid,
    pub event_id: uuid::Uuid,
    pub event_position: Position,
    pub trigger: Trigger,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub status_code: u16,
    pub duration_ms: u32,
    pub delivered_at: Timestamp,
}

/// An attempt at a delivery failed (an answer other than 2xx, a timeout,
/// no connection). `next_attempt_at` is `None` when kedai gave up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookAttemptFailed {
    pub webhook_id: uuid::Uuid,
    pub delivery_id: uuid::Uuid,
    pub event_id: uuid::Uuid,
    pub event_position: Position,
    pub trigger: Trigger,
    pub attempt: u32,
    pub status_code: Option<u16>,
    pub error: String,
    pub duration_ms: u32,
    pub failed_at: Timestamp,
    pub next_attempt_at: Option<Timestamp>,
}

impl DomainEvent {
    /// The event with secrets blanked (`"[redacted]"`), for every view
    /// that is not the answer to creating or rotating them.
    pub fn redacted(&self) -> DomainEvent {
        const REDACTED: &str = "[redacted]";
        match self {
            DomainEvent::WebhookSubscribed(e) => WebhookSubscribed {
                secret: REDACTED.into(),
                ..(**e).clone()
            }
            .into(),
            DomainEvent::WebhookSecretRotated(e) => {
                DomainEvent::WebhookSecretRotated(WebhookSecretRotated {
                    secret: REDACTED.into(),
                    ..e.clone()
                })
            }
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rule for changing an event (see the module's notes): a field
    /// added at the end with a default reads the payloads written before.
    #[test]
    fn a_field_added_at_the_end_with_a_default_reads_payloads_written_before_it() {
        #[derive(Debug, PartialEq, Deserialize)]
        struct Later {
            order_id: OrderId,
            awb: String,
            #[serde(default)]
            courier: Option<String>,
        }
        let before = DomainEvent::from(OrderShipped {
            order_id: OrderId(uuid::Uuid::from_u128(1)),
            awb: "JNE1".into(),
        })
        .encode();
        assert_eq!(before[0], 0x92, "an array of two fields");
        let later: Later = rmp_serde::from_slice(&before).unwrap();
        assert_eq!(
            later,
            Later {
                order_id: OrderId(uuid::Uuid::from_u128(1)),
                awb: "JNE1".into(),
                courier: None,
            }
        );
    }

    /// Every decoded event is moved several times on its way to the
    /// projections (a copy of the whole enum each time), so the enum is
    /// kept to the size of a chat message received, a payment or a
    /// conversation started (96 bytes) and its tag: a variant bigger than
    /// those is boxed (a ledger transaction and a message sent are, and
    /// the fold of a shop's log ran a few percent faster for it).
    #[test]
    fn an_event_is_no_bigger_than_a_message_received_and_its_tag() {
        assert_eq!(std::mem::size_of::<MessageReceived>(), 96);
        assert!(
            std::mem::size_of::<DomainEvent>() <= std::mem::size_of::<MessageReceived>() + 8,
            "DomainEvent is {} bytes",
            std::mem::size_of::<DomainEvent>()
        );
    }
}

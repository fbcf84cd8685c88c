//! Why the domain refuses a command: typed rejections (business rules) and
//! field errors (input that is malformed before any rule applies).
//!
//! Each rejection has a stable snake_case `code()` for API clients and a
//! sentence for people (`Display`). The HTTP layer maps them once.

use std::fmt;

use serde::Serialize;

use super::checkout::CheckoutStatus;
use super::ids::{CustomerId, OrderId, ProductId, Sku, WarehouseId};
use super::money::Money;
use super::order::OrderStatus;
use super::wallet::WithdrawalStatus;
use uuid::Uuid;

/// A field of a command that is wrong, and how.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Path of the field, e.g. `lines[2].quantity`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Collects field errors while validating a command.
#[derive(Debug, Default)]
pub struct Check(Vec<FieldError>);

impl Check {
    pub fn new() -> Self {
        Check::default()
    }

    /// Records `message` for `field` unless `ok`.
    pub fn that(
        &mut self,
        ok: bool,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> &mut Self {
        if !ok {
            self.0.push(FieldError::new(field, message));
        }
        self
    }

    /// A text field: trimmed length within `1..=max` when `required`,
    /// `0..=max` otherwise.
    pub fn text(&mut self, value: &str, field: &str, required: bool, max: usize) -> &mut Self {
        let len = value.trim().chars().count();
        if required && len == 0 {
            self.0.push(FieldError::new(field, "must not be empty"));
        } else if len > max {
            self.0.push(FieldError::new(
                field,
                format!("must be at most {max} characters"),
            ));
        }
        self
    }

    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

/// Stock missing for one SKU when placing an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Shortage {
    pub sku: Sku,
    /// The warehouse asked for, if the line named one.
    pub warehouse_id: Option<WarehouseId>,
    pub requested: i64,
    pub available: i64,
}

/// A business rule that refuses a command. Names are sentences.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the shop already exists")]
    ShopAlreadyExists,
    #[error("the shop does not exist")]
    UnknownShop,
    #[error("warehouse {warehouse_id} already exists")]
    WarehouseExists { warehouse_id: WarehouseId },
    #[error("a warehouse named {name:?} already exists")]
    WarehouseNameTaken { name: String },
    #[error("warehouse {warehouse_id} does not exist")]
    UnknownWarehouse { warehouse_id: WarehouseId },
    #[error("the shop has no warehouse yet; add one first")]
    NoWarehouse,
    #[error("product {product_id} already exists")]
    ProductExists { product_id: ProductId },
    #[error("product {product_id} does not exist")]
    UnknownProduct { product_id: ProductId },
    #[error("SKU {sku} is already used by another variation")]
    SkuTaken { sku: Sku },
    #[error("SKU {sku} does not exist")]
    UnknownSku { sku: Sku },
    #[error(
        "SKU {sku} belongs to a product of type R (supplier stock), whose stock kedai does not count"
    )]
    SkuNotTracked { sku: Sku },
    #[error("the supplier has SKU {sku} out of stock")]
    SupplierOutOfStock { sku: Sku },
    #[error("customer {customer_id} already exists")]
    CustomerExists { customer_id: CustomerId },
    #[error("customer {customer_id} does not exist")]
    UnknownCustomer { customer_id: CustomerId },
    #[error("insufficient stock: {}", describe_shortages(.shortages))]
    InsufficientStock { shortages: Vec<Shortage> },
    #[error(
        "cannot count {sku} in warehouse {warehouse_id} at {counted}: {reserved} are reserved for orders"
    )]
    CountBelowReserved {
        sku: Sku,
        warehouse_id: WarehouseId,
        counted: i64,
        reserved: i64,
    },
    #[error("a transfer needs two different warehouses")]
    WarehousesMustDiffer,
    #[error("order {order_id} already exists")]
    OrderExists { order_id: OrderId },
    #[error("order {order_id} does not exist")]
    UnknownOrder { order_id: OrderId },
    #[error("cannot {action} order {order_id}: it is {status}")]
    IllegalTransition {
        order_id: OrderId,
        action: &'static str,
        status: OrderStatus,
    },
    /// Ngorder's wording.
    #[error("Order has been paid")]
    OrderAlreadyPaid { order_id: OrderId },
    /// Ngorder's wording.
    #[error("Amount is more than amount remaining of this order (remaining {remaining})")]
    AmountExceedsRemaining { order_id: OrderId, remaining: Money },
    #[error("nothing of order {order_id} is left to refund (refundable {refundable})")]
    RefundExceedsRefundable {
        order_id: OrderId,
        refundable: Money,
    },
    #[error("the discount on {sku} ({discount}) is more than the line ({line})")]
    DiscountExceedsLine {
        sku: Sku,
        discount: Money,
        line: Money,
    },
    #[error(
        "the line of {sku} would come to more than {max} ({quantity} x {unit})",
        max = super::order::AMOUNT_MAX
    )]
    LineTooLarge {
        sku: Sku,
        quantity: i64,
        unit: Money,
    },
    #[error("the order total would be {total}, below zero")]
    TotalBelowZero { total: Money },
    #[error("order {order_id} has no COD money waiting to be settled")]
    NothingToSettle { order_id: OrderId },
    #[error("withdrawal {withdrawal_id} already exists")]
    WithdrawalExists { withdrawal_id: Uuid },
    #[error("a withdrawal must be at least {minimum}")]
    WithdrawalBelowMinimum { minimum: Money },
    #[error("insufficient balance: {available} available, {needed} needed (amount and fee)")]
    InsufficientBalance { available: Money, needed: Money },
    #[error("withdrawal {withdrawal_id} does not exist")]
    UnknownWithdrawal { withdrawal_id: Uuid },
    #[error("cannot {action} withdrawal {withdrawal_id}: it is {status}")]
    IllegalWithdrawalTransition {
        withdrawal_id: Uuid,
        action: &'static str,
        status: WithdrawalStatus,
    },
    #[error("expense {expense_id} already exists")]
    ExpenseExists { expense_id: Uuid },
    #[error("expense {expense_id} does not exist")]
    UnknownExpense { expense_id: Uuid },
    #[error("checkout {checkout_id} already exists")]
    CheckoutExists { checkout_id: Uuid },
    #[error("checkout {checkout_id} does not exist")]
    UnknownCheckout { checkout_id: Uuid },
    #[error("checkout {checkout_id} is {status:?} and can no longer change")]
    CheckoutClosed {
        checkout_id: Uuid,
        status: CheckoutStatus,
    },
    #[error("conversation {conversation_id} does not exist")]
    UnknownConversation { conversation_id: Uuid },
    #[error("a conversation has at most {max} labels")]
    TooManyLabels { max: usize },
    #[error("message {message_id} is not in the outbox")]
    MessageNotQueued { message_id: Uuid },
    #[error("template {template_id} does not exist")]
    UnknownTemplate { template_id: Uuid },
    #[error("the template is malformed: {reason}")]
    TemplateMalformed { reason: String },
    #[error("the data has no value for the template's key {key:?}")]
    TemplateKeyMissing { key: String },
    #[error("the template has no key {key:?}")]
    TemplateKeyUnknown { key: String },
    #[error("key {key_id} already exists")]
    KeyExists { key_id: Uuid },
    #[error("key {key_id} does not exist")]
    UnknownKey { key_id: Uuid },
    #[error("webhook subscription {webhook_id} already exists")]
    WebhookExists { webhook_id: Uuid },
    #[error("webhook subscription {webhook_id} does not exist")]
    UnknownWebhook { webhook_id: Uuid },
}

fn describe_shortages(shortages: &[Shortage]) -> String {
    shortages
        .iter()
        .map(|s| match s.warehouse_id {
            Some(w) => format!(
                "{} (requested {}, available {} in warehouse {w})",
                s.sku, s.requested, s.available
            ),
            None => format!(
                "{} (requested {}, available {})",
                s.sku, s.requested, s.available
            ),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Rejection {
    /// A stable identifier for API clients.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::ShopAlreadyExists => "shop_already_exists",
            Rejection::UnknownShop => "unknown_shop",
            Rejection::WarehouseExists { .. } => "warehouse_exists",
            Rejection::WarehouseNameTaken { .. } => "warehouse_name_taken",
            Rejection::UnknownWarehouse { .. } => "unknown_warehouse",
            Rejection::NoWarehouse => "no_warehouse",
            Rejection::ProductExists { .. } => "product_exists",
            Rejection::UnknownProduct { .. } => "unknown_product",
            Rejection::SkuTaken { .. } => "sku_taken",
            Rejection::UnknownSku { .. } => "unknown_sku",
            Rejection::SkuNotTracked { .. } => "sku_not_tracked",
            Rejection::SupplierOutOfStock { .. } => "supplier_out_of_stock",
            Rejection::CustomerExists { .. } => "customer_exists",
            Rejection::UnknownCustomer { .. } => "unknown_customer",
            Rejection::InsufficientStock { .. } => "insufficient_stock",
            Rejection::CountBelowReserved { .. } => "count_below_reserved",
            Rejection::WarehousesMustDiffer => "warehouses_must_differ",
            Rejection::OrderExists { .. } => "order_exists",
            Rejection::UnknownOrder { .. } => "unknown_order",
            Rejection::IllegalTransition { .. } => "illegal_transition",
            Rejection::OrderAlreadyPaid { .. } => "order_already_paid",
            Rejection::AmountExceedsRemaining { .. } => "amount_exceeds_remaining",
            Rejection::RefundExceedsRefundable { .. } => "refund_exceeds_refundable",
            Rejection::DiscountExceedsLine { .. } => "discount_exceeds_line",
            Rejection::LineTooLarge { .. } => "line_too_large",
            Rejection::TotalBelowZero { .. } => "total_below_zero",
            Rejection::NothingToSettle { .. } => "nothing_to_settle",
            Rejection::WithdrawalExists { .. } => "withdrawal_exists",
            Rejection::WithdrawalBelowMinimum { .. } => "withdrawal_below_minimum",
            Rejection::InsufficientBalance { .. } => "insufficient_balance",
            Rejection::UnknownWithdrawal { .. } => "unknown_withdrawal",
            Rejection::IllegalWithdrawalTransition { .. } => "illegal_withdrawal_transition",
            Rejection::ExpenseExists { .. } => "expense_exists",
            Rejection::UnknownExpense { .. } => "unknown_expense",
            Rejection::CheckoutExists { .. } => "checkout_exists",
            Rejection::UnknownCheckout { .. } => "unknown_checkout",
            Rejection::CheckoutClosed { .. } => "checkout_closed",
            Rejection::UnknownConversation { .. } => "unknown_conversation",
            Rejection::TooManyLabels { .. } => "too_many_labels",
            Rejection::MessageNotQueued { .. } => "message_not_queued",
            Rejection::UnknownTemplate { .. } => "unknown_template",
            Rejection::TemplateMalformed { .. } => "template_malformed",
            Rejection::TemplateKeyMissing { .. } => "template_key_missing",
            Rejection::TemplateKeyUnknown { .. } => "template_key_unknown",
            Rejection::KeyExists { .. } => "key_exists",
            Rejection::UnknownKey { .. } => "unknown_key",
            Rejection::WebhookExists { .. } => "webhook_exists",
            Rejection::UnknownWebhook { .. } => "unknown_webhook",
        }
    }

    /// Whether the rejection is about something that does not exist (the
    /// API answers 404 for these).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Rejection::UnknownShop
                | Rejection::UnknownWarehouse { .. }
                | Rejection::UnknownProduct { .. }
                | Rejection::UnknownSku { .. }
                | Rejection::UnknownCustomer { .. }
                | Rejection::UnknownOrder { .. }
                | Rejection::UnknownWithdrawal { .. }
                | Rejection::UnknownExpense { .. }
                | Rejection::UnknownCheckout { .. }
                | Rejection::UnknownConversation { .. }
                | Rejection::UnknownTemplate { .. }
                | Rejection::MessageNotQueued { .. }
                | Rejection::UnknownKey { .. }
                | Rejection::UnknownWebhook { .. }
        )
    }
}

impl fmt::Display for Shortage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe_shortages(std::slice::from_ref(self)))
    }
}

//! Conversations with buyers (WhatsApp, Shopee, Tokopedia), labels,
//! assignment, statuses, and message templates (quick replies).
//!
//! A conversation is one per (channel, customer handle): its id is derived
//! from them ([`conversation_id`]), so the same buyer on the same channel
//! always lands in the same conversation.
//!
//! Templated WhatsApp messages ([`SendTemplateMessage`], Indoshopster's
//! API) are recorded as outbound messages and queued in the conversation's
//! outbox ([`MessageQueued`]); the sender records how each went
//! ([`record_dispatch`]): `queued`, then `sent` or `failed`, once.
//!
//! Status rules (Forstok's four): `unserved` when the customer wrote and no
//! one answered; `mine` while a staff member is assigned; `served` once
//! staff answered; `resolved` when marked so. A new message from the
//! customer reopens a resolved conversation (`unserved`, or `mine` if it is
//! assigned) and makes a served one unserved again.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::Context;
use super::catalog::NAME_LEN_MAX;
use super::events::*;
use super::ids::{CustomerId, OrderId, Sku};
use super::phone::PhoneNumber;
use super::rejection::{Check, FieldError, Rejection};
use crate::event::{ShopId, Timestamp};

/// Longest message text (WhatsApp's limit).
pub const MESSAGE_TEXT_MAX: usize = 4_096;
/// Longest label.
pub const LABEL_LEN_MAX: usize = 50;
/// Most labels on one conversation.
pub const LABELS_MAX: usize = 20;
/// Longest template body.
pub const TEMPLATE_BODY_MAX: usize = 4_096;
/// Most keys in a template's data.
pub const TEMPLATE_DATA_KEYS_MAX: usize = 100;
/// Longest value in a template's data.
pub const TEMPLATE_DATA_VALUE_MAX: usize = 1_000;
/// Longest reason a failed dispatch records.
pub const DISPATCH_REASON_MAX: usize = 500;
/// Forstok's initial import: the last 15 conversations, 30 messages each.
pub const IMPORT_CONVERSATIONS_MAX: usize = 15;
pub const IMPORT_MESSAGES_MAX: usize = 30;

/// Where a conversation happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatChannel {
    Whatsapp,
    Shopee,
    Tokopedia,
}

impl ChatChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatChannel::Whatsapp => "whatsapp",
            ChatChannel::Shopee => "shopee",
            ChatChannel::Tokopedia => "tokopedia",
        }
    }
}

/// Forstok's statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatStatus {
    Unserved,
    Mine,
    Served,
    Resolved,
}

impl ChatStatus {
    pub const ALL: [ChatStatus; 4] = [
        ChatStatus::Unserved,
        ChatStatus::Mine,
        ChatStatus::Served,
        ChatStatus::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChatStatus::Unserved => "unserved",
            ChatStatus::Mine => "mine",
            ChatStatus::Served => "served",
            ChatStatus::Resolved => "resolved",
        }
    }
}

/// What a message carries besides text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Attachment {
    Image { url: String },
    Product { sku: Sku },
    Order { order_id: OrderId },
}

/// Who wrote a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Author {
    Customer,
    Staff { staff_id: String },
}

/// The conversation id of (shop, channel, handle): a UUID v8 from BLAKE3.
pub fn conversation_id(shop: ShopId, channel: ChatChannel, handle: &str) -> uuid::Uuid {
    let mut h = blake3::Hasher::new();
    h.update(b"kedai conversation v1");
    h.update(shop.0.as_bytes());
    h.update(channel.as_str().as_bytes());
    h.update(&[0]);
    h.update(handle.as_bytes());
    uuid::Uuid::new_v8(h.finalize().as_bytes()[..16].try_into().expect("16 bytes"))
}

/// A conversation as its stream knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conversation {
    pub started: Option<ConversationStarted>,
    pub status: Option<ChatStatus>,
    pub labels: BTreeSet<String>,
    pub assignee: Option<String>,
    pub messages: u64,
    pub last_inbound: bool,
    pub message_ids: BTreeSet<uuid::Uuid>,
    /// Outbound messages handed to a sender, and how far they got.
    pub outbox: BTreeMap<uuid::Uuid, Delivery>,
}

/// How far a queued message got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Waiting for the sender.
    Queued,
    /// The channel's gateway accepted it.
    Sent,
    /// The sender gave up.
    Failed,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Queued => "queued",
            Delivery::Sent => "sent",
            Delivery::Failed => "failed",
        }
    }
}

impl Conversation {
    pub fn evolve(&mut self, event: &DomainEvent) {
        match event {
            DomainEvent::ConversationStarted(e) => {
                self.started = Some(e.clone());
                self.status = Some(ChatStatus::Unserved);
            }
            DomainEvent::MessageReceived(e) => self.message(e.message_id, true),
            DomainEvent::MessageSent(e) => self.message(e.message_id, false),
            DomainEvent::MessagesImported(e) => {
                for m in &e.messages {
                    self.message(m.message_id, matches!(m.author, Author::Customer));
                }
            }
            DomainEvent::ConversationLabelAdded(e) => {
                self.labels.insert(e.label.clone());
            }
            DomainEvent::ConversationLabelRemoved(e) => {
                self.labels.remove(&e.label);
            }
            DomainEvent::ConversationAssigned(e) => {
                self.assignee = Some(e.staff_id.clone());
                if self.status != Some(ChatStatus::Resolved) {
                    self.status = Some(ChatStatus::Mine);
                }
            }
            DomainEvent::ConversationUnassigned(_) => {
                self.assignee = None;
                if self.status == Some(ChatStatus::Mine) {
                    self.status = Some(if self.last_inbound {
                        ChatStatus::Unserved
                    } else {
                        ChatStatus::Served
                    });
                }
            }
            DomainEvent::ConversationResolved(_) => self.status = Some(ChatStatus::Resolved),
            DomainEvent::ConversationReopened(_) => {
                self.status = Some(if self.assignee.is_some() {
                    ChatStatus::Mine
                } else {
                    ChatStatus::Unserved
                });
            }
            DomainEvent::MessageQueued(e) => {
                self.outbox.insert(e.message_id, Delivery::Queued);
            }
            DomainEvent::MessageDispatched(e) => {
                self.outbox.insert(e.message_id, Delivery::Sent);
            }
            DomainEvent::MessageDispatchFailed(e) => {
                self.outbox.insert(e.message_id, Delivery::Failed);
            }
            _ => {}
        }
    }

    fn message(&mut self, id: uuid::Uuid, inbound: bool) {
        self.messages += 1;
        self.last_inbound = inbound;
        self.message_ids.insert(id);
        let status = self.status.unwrap_or(ChatStatus::Unserved);
        self.status = Some(match (status, inbound) {
            (ChatStatus::Mine, _) => ChatStatus::Mine,
            // Reopening is its own event, recorded before the message.
            (ChatStatus::Resolved, true) => ChatStatus::Resolved,
            (_, true) => ChatStatus::Unserved,
            (ChatStatus::Resolved, false) => ChatStatus::Resolved,
            (_, false) => ChatStatus::Served,
        });
    }
}

/// Which conversation: by (channel, handle).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    pub channel: ChatChannel,
    /// WhatsApp number (`62...`), or the marketplace buyer's id.
    pub handle: String,
    /// The buyer's name as the channel shows it.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub customer_id: Option<CustomerId>,
}

impl Party {
    fn check(&self, c: &mut Check) {
        c.that(
            !self.handle.is_empty()
                && self.handle.len() <= 64
                && self
                    .handle
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.')),
            "handle",
            "must be 1 to 64 letters, digits, '-', '_' or '.'",
        )
        .text(&self.name, "name", false, NAME_LEN_MAX);
    }
}

fn check_message(text: &str, attachment: &Option<Attachment>, c: &mut Check, field: &str) {
    c.that(
        text.chars().count() <= MESSAGE_TEXT_MAX,
        format!("{field}text"),
        format!("must be at most {MESSAGE_TEXT_MAX} characters"),
    );
    c.that(
        !text.trim().is_empty() || attachment.is_some(),
        format!("{field}text"),
        "a message needs text or an attachment",
    );
    if let Some(Attachment::Image { url }) = attachment {
        c.that(
            (url.starts_with("https://") || url.starts_with("http://")) && url.len() <= 2_000,
            format!("{field}attachment.url"),
            "must be an http(s) URL",
        );
    }
}

/// Events that start a conversation if it has not started.
fn ensure_started(
    conversation: &Conversation,
    id: uuid::Uuid,
    party: &Party,
    started_at: Timestamp,
) -> Vec<DomainEvent> {
    if conversation.started.is_some() {
        return Vec::new();
    }
    vec![
        ConversationStarted {
            conversation_id: id,
            channel: party.channel,
            handle: party.handle.clone(),
            name: party.name.trim().to_owned(),
            customer_id: party.customer_id,
            started_at,
        }
        .into(),
    ]
}

/// A message from the customer arrived.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiveMessage {
    pub party: Party,
    pub message_id: uuid::Uuid,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub attachment: Option<Attachment>,
    /// When the channel says it was sent; defaults to now. A time after
    /// now (a channel whose clock is ahead) is taken as now: a message is
    /// not sent after it arrived, and a conversation would otherwise stay
    /// at the top of the inbox until that time.
    #[serde(default)]
    pub sent_at: Option<Timestamp>,
}

impl ReceiveMessage {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        self.party.check(&mut c);
        check_message(&self.text, &self.attachment, &mut c, "");
        if let Some(t) = self.sent_at {
            check_sent_at(t, &mut c, "sent_at");
        }
        c.finish()
    }
}

/// A message's `sent_at` is not before 1970: a reply's response time is
/// counted from it, and a moment near the start of `i64` would make that
/// time meaningless (and, summed, overflow).
fn check_sent_at(t: Timestamp, c: &mut Check, field: &str) {
    c.that(t.0 >= 0, field, "must not be before 1970-01-01T00:00:00Z");
}

pub fn receive(
    conversation: &Conversation,
    id: uuid::Uuid,
    cmd: &ReceiveMessage,
    ctx: &Context,
) -> Result<Vec<DomainEvent>, Rejection> {
    if conversation.message_ids.contains(&cmd.message_id) {
        return Ok(Vec::new());
    }
    let sent_at = cmd.sent_at.map_or(ctx.now, |t| t.min(ctx.now));
    // A conversation new to kedai starts with this message, as an
    // imported one starts with its first.
    let mut events = ensure_started(conversation, id, &cmd.party, sent_at);
    if conversation.status == Some(ChatStatus::Resolved) {
        events.push(
            ConversationReopened {
                conversation_id: id,
            }
            .into(),
        );
    }
    events.push(
        MessageReceived {
            conversation_id: id,
            message_id: cmd.message_id,
            text: cmd.text.clone(),
            attachment: cmd.attachment.clone(),
            sent_at,
        }
        .into(),
    );
    Ok(events)
}

/// Staff write to a customer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMessage {
    pub party: Party,
    pub message_id: uuid::Uuid,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub attachment: Option<Attachment>,
}

impl SendMessage {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        self.party.check(&mut c);
        check_message(&self.text, &self.attachment, &mut c, "");
        c.finish()
    }
}

/// Records a message sent by the acting staff member (`ctx.actor`).
/// `template`: the template it was filled from, if any.
pub fn send(
    conversation: &Conversation,
    id: uuid::Uuid,
    cmd: &SendMessage,
    template: Option<uuid::Uuid>,
    ctx: &Context,
) -> Result<Vec<DomainEvent>, Rejection> {
    if conversation.message_ids.contains(&cmd.message_id) {
        return Ok(Vec::new());
    }
    let mut events = ensure_started(conversation, id, &cmd.party, ctx.now);
    events.push(
        MessageSent {
            conversation_id: id,
            message_id: cmd.message_id,
            staff_id: ctx.actor.id.clone(),
            text: cmd.text.clone(),
            attachment: cmd.attachment.clone(),
            template_id: template,
            sent_at: ctx.now,
        }
        .into(),
    );
    Ok(events)
}

/// Indoshopster's "send a templated WhatsApp message": the template is
/// filled with `data`, recorded in the buyer's WhatsApp conversation as an
/// outbound message, and queued for the sender.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendTemplateMessage {
    pub message_id: uuid::Uuid,
    pub template_id: uuid::Uuid,
    /// As the client wrote it (see [`super::phone`]); the conversation is
    /// that of the normalised number.
    pub phone_number: String,
    /// The buyer's name, for a conversation this starts.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub customer_id: Option<CustomerId>,
    pub data: BTreeMap<String, String>,
}

impl SendTemplateMessage {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        if let Err(why) = PhoneNumber::parse(&self.phone_number) {
            c.push(FieldError::new("phone_number", why.to_string()));
        }
        c.text(&self.name, "name", false, NAME_LEN_MAX);
        check_data(&self.data, &mut c);
        c.finish()
    }

    /// The normalised number (the command must be valid).
    pub fn phone(&self) -> PhoneNumber {
        PhoneNumber::parse(&self.phone_number).expect("validated")
    }

    /// The conversation this message goes to.
    pub fn party(&self) -> Party {
        Party {
            channel: ChatChannel::Whatsapp,
            handle: self.phone().as_str().to_owned(),
            name: self.name.clone(),
            customer_id: self.customer_id,
        }
    }
}

/// Template data: at most [`TEMPLATE_DATA_KEYS_MAX`] keys, each value at
/// most [`TEMPLATE_DATA_VALUE_MAX`] characters.
pub fn check_data(data: &BTreeMap<String, String>, c: &mut Check) {
    c.that(
        data.len() <= TEMPLATE_DATA_KEYS_MAX,
        "data",
        format!("at most {TEMPLATE_DATA_KEYS_MAX} keys"),
    );
    for (k, v) in data {
        c.that(k.len() <= 100, "data", "keys are at most 100 characters")
            .that(
                v.chars().count() <= TEMPLATE_DATA_VALUE_MAX,
                format!("data.{k}"),
                format!("must be at most {TEMPLATE_DATA_VALUE_MAX} characters"),
            );
    }
}

/// Records a filled template as sent by the acting staff member and queues
/// it for the sender (`MessageSent` then `MessageQueued`). A message id
/// already in the conversation records nothing (a repeat).
pub fn send_template_message(
    conversation: &Conversation,
    id: uuid::Uuid,
    cmd: &SendTemplateMessage,
    text: String,
    ctx: &Context,
) -> Result<Vec<DomainEvent>, Rejection> {
    let party = cmd.party();
    let message = SendMessage {
        party,
        message_id: cmd.message_id,
        text,
        attachment: None,
    };
    let mut events = send(conversation, id, &message, Some(cmd.template_id), ctx)?;
    if events.is_empty() {
        return Ok(events);
    }
    events.push(
        MessageQueued {
            conversation_id: id,
            message_id: cmd.message_id,
            channel: ChatChannel::Whatsapp,
            to: message.party.handle,
            queued_at: ctx.now,
        }
        .into(),
    );
    Ok(events)
}

/// How a sender's work on a queued message ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum DispatchOutcome {
    Sent {
        attempts: u32,
        #[serde(default)]
        gateway_message_id: Option<String>,
    },
    Failed {
        attempts: u32,
        reason: String,
    },
}

impl DispatchOutcome {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        match self {
            DispatchOutcome::Sent {
                attempts,
                gateway_message_id,
            } => {
                c.that(*attempts >= 1, "attempts", "must be 1 or more");
                if let Some(g) = gateway_message_id {
                    c.text(g, "gateway_message_id", false, 200);
                }
            }
            DispatchOutcome::Failed { attempts, reason } => {
                c.that(*attempts >= 1, "attempts", "must be 1 or more")
                    .text(reason, "reason", true, DISPATCH_REASON_MAX);
            }
        }
        c.finish()
    }
}

/// Records how a queued message went. The first outcome stands: another
/// one for a message no longer queued records nothing (two senders, or a
/// retry after a crash, cannot change it).
pub fn record_dispatch(
    conversation: &Conversation,
    id: uuid::Uuid,
    message_id: uuid::Uuid,
    outcome: &DispatchOutcome,
    ctx: &Context,
) -> Result<Vec<DomainEvent>, Rejection> {
    if conversation.status.is_none() {
        return Err(Rejection::UnknownConversation {
            conversation_id: id,
        });
    }
    match conversation.outbox.get(&message_id) {
        None => return Err(Rejection::MessageNotQueued { message_id }),
        Some(Delivery::Queued) => {}
        Some(_) => return Ok(Vec::new()),
    }
    let event: DomainEvent = match outcome {
        DispatchOutcome::Sent {
            attempts,
            gateway_message_id,
        } => MessageDispatched {
            conversation_id: id,
            message_id,
            attempts: *attempts,
            gateway_message_id: gateway_message_id.clone(),
            dispatched_at: ctx.now,
        }
        .into(),
        DispatchOutcome::Failed { attempts, reason } => MessageDispatchFailed {
            conversation_id: id,
            message_id,
            attempts: *attempts,
            reason: reason.clone(),
            failed_at: ctx.now,
        }
        .into(),
    };
    Ok(vec![event])
}

/// Changes to a conversation other than messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ConversationChange {
    AddLabel { label: String },
    RemoveLabel { label: String },
    Assign { staff_id: String },
    Unassign,
    Resolve,
}

impl ConversationChange {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        match self {
            ConversationChange::AddLabel { label } | ConversationChange::RemoveLabel { label } => {
                c.text(label, "label", true, LABEL_LEN_MAX);
            }
            ConversationChange::Assign { staff_id } => {
                c.text(staff_id, "staff_id", true, 200);
            }
            _ => {}
        }
        c.finish()
    }
}

pub fn change(
    conversation: &Conversation,
    id: uuid::Uuid,
    cmd: &ConversationChange,
    ctx: &Context,
) -> Result<Vec<DomainEvent>, Rejection> {
    let status = conversation.status.ok_or(Rejection::UnknownConversation {
        conversation_id: id,
    })?;
    let event: DomainEvent = match cmd {
        ConversationChange::AddLabel { label } => {
            let label = label.trim().to_owned();
            if conversation.labels.contains(&label) {
                return Ok(Vec::new());
            }
            if conversation.labels.len() >= LABELS_MAX {
                return Err(Rejection::TooManyLabels { max: LABELS_MAX });
            }
            ConversationLabelAdded {
                conversation_id: id,
                label,
            }
            .into()
        }
        ConversationChange::RemoveLabel { label } => {
            let label = label.trim().to_owned();
            if !conversation.labels.contains(&label) {
                return Ok(Vec::new());
            }
            ConversationLabelRemoved {
                conversation_id: id,
                label,
            }
            .into()
        }
        ConversationChange::Assign { staff_id } => {
            if conversation.assignee.as_deref() == Some(staff_id.trim()) {
                return Ok(Vec::new());
            }
            ConversationAssigned {
                conversation_id: id,
                staff_id: staff_id.trim().to_owned(),
            }
            .into()
        }
        ConversationChange::Unassign => {
            if conversation.assignee.is_none() {
                return Ok(Vec::new());
            }
            ConversationUnassigned {
                conversation_id: id,
            }
            .into()
        }
        ConversationChange::Resolve => {
            if status == ChatStatus::Resolved {
                return Ok(Vec::new());
            }
            ConversationResolved {
                conversation_id: id,
                resolved_by: ctx.actor.id.clone(),
                resolved_at: ctx.now,
            }
            .into()
        }
    };
    Ok(vec![event])
}

/// One message of an initial import.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedMessage {
    pub message_id: uuid::Uuid,
    pub author: Author,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub attachment: Option<Attachment>,
    pub sent_at: Timestamp,
}

/// One conversation of an initial import, with its recent messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedConversation {
    pub party: Party,
    pub messages: Vec<ImportedMessage>,
}

/// Forstok's activation import: a channel's recent history as one command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportHistory {
    pub channel: ChatChannel,
    pub conversations: Vec<ImportedConversation>,
}

impl ImportHistory {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        c.that(
            !self.conversations.is_empty(),
            "conversations",
            "nothing to import",
        )
        .that(
            self.conversations.len() <= IMPORT_CONVERSATIONS_MAX,
            "conversations",
            format!("at most {IMPORT_CONVERSATIONS_MAX}"),
        );
        let mut seen = BTreeSet::new();
        for (i, conv) in self.conversations.iter().enumerate() {
            let mut inner = Check::new();
            conv.party.check(&mut inner);
            for e in inner.finish().err().unwrap_or_default() {
                c.push(FieldError::new(
                    format!("conversations[{i}].party.{}", e.field),
                    e.message,
                ));
            }
            c.that(
                conv.party.channel == self.channel,
                format!("conversations[{i}].party.channel"),
                "must be the import's channel",
            )
            .that(
                seen.insert(&conv.party.handle),
                format!("conversations[{i}].party.handle"),
                "appears twice",
            )
            .that(
                conv.messages.len() <= IMPORT_MESSAGES_MAX,
                format!("conversations[{i}].messages"),
                format!("at most {IMPORT_MESSAGES_MAX}"),
            );
            for (j, m) in conv.messages.iter().enumerate() {
                let at = format!("conversations[{i}].messages[{j}].");
                check_message(&m.text, &m.attachment, &mut c, &at);
                check_sent_at(m.sent_at, &mut c, &format!("{at}sent_at"));
            }
        }
        c.finish()
    }
}

/// The events of one imported conversation (messages already there are
/// skipped, so an import can be repeated).
pub fn import(
    conversation: &Conversation,
    id: uuid::Uuid,
    imported: &ImportedConversation,
    ctx: &Context,
) -> Vec<DomainEvent> {
    // As a message received: none is sent after now.
    let mut messages: Vec<ImportedMessage> = imported
        .messages
        .iter()
        .filter(|m| !conversation.message_ids.contains(&m.message_id))
        .map(|m| ImportedMessage {
            sent_at: m.sent_at.min(ctx.now),
            ..m.clone()
        })
        .collect();
    messages.sort_by_key(|m| m.sent_at);
    // A conversation new to kedai started with its first message (a lead
    // of that day, not of the import's).
    let started_at = messages.first().map_or(ctx.now, |m| m.sent_at);
    let mut events = ensure_started(conversation, id, &imported.party, started_at);
    if !messages.is_empty() {
        events.push(
            MessagesImported {
                conversation_id: id,
                messages,
            }
            .into(),
        );
    }
    events
}

// ------------------------------------------------------------ templates

/// A message template (quick reply) as its stream knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Template {
    pub name: Option<String>,
    pub body: String,
    pub deleted: bool,
}

impl Template {
    pub fn evolve(&mut self, event: &DomainEvent) {
        match event {
            DomainEvent::TemplateSaved(e) => {
                self.name = Some(e.name.clone());
                self.body = e.body.clone();
            }
            DomainEvent::TemplateDeleted(_) => self.deleted = true,
            _ => {}
        }
    }

    pub fn exists(&self) -> bool {
        self.name.is_some() && !self.deleted
    }
}

/// The placeholder names of a template body (`{{fullname}}`), in order of
/// first appearance; or why the body is malformed.
pub fn placeholders(body: &str) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    let mut rest = body;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| "a '{{' is not closed with '}}'".to_owned())?;
        let name = after[..close].trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "placeholder {{{{{}}}}} must be letters, digits and '_'",
                &after[..close]
            ));
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
        rest = &after[close + 2..];
    }
    Ok(names)
}

/// Fills a template: every placeholder needs a value and every value a
/// placeholder; the error names the key.
pub fn fill(body: &str, data: &BTreeMap<String, String>) -> Result<String, Rejection> {
    let names = placeholders(body).map_err(|why| Rejection::TemplateMalformed { reason: why })?;
    if let Some(missing) = names.iter().find(|n| !data.contains_key(*n)) {
        return Err(Rejection::TemplateKeyMissing {
            key: missing.clone(),
        });
    }
    if let Some(unknown) = data.keys().find(|k| !names.contains(k)) {
        return Err(Rejection::TemplateKeyUnknown {
            key: unknown.clone(),
        });
    }
    let mut out = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after.find("}}").expect("checked by placeholders");
        out.push_str(&data[after[..close].trim()]);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveTemplate {
    pub template_id: uuid::Uuid,
    pub name: String,
    pub body: String,
}

impl SaveTemplate {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        c.text(&self.name, "name", true, NAME_LEN_MAX).text(
            &self.body,
            "body",
            true,
            TEMPLATE_BODY_MAX,
        );
        if let Err(why) = placeholders(&self.body) {
            c.push(FieldError::new("body", why));
        }
        c.finish()
    }
}

pub fn save_template(
    template: &Template,
    cmd: &SaveTemplate,
) -> Result<Vec<DomainEvent>, Rejection> {
    if template.deleted {
        return Err(Rejection::UnknownTemplate {
            template_id: cmd.template_id,
        });
    }
    if template.name.as_deref() == Some(cmd.name.trim()) && template.body == cmd.body {
        return Ok(Vec::new());
    }
    let placeholders =
        placeholders(&cmd.body).map_err(|reason| Rejection::TemplateMalformed { reason })?;
    Ok(vec![
        TemplateSaved {
            template_id: cmd.template_id,
            name: cmd.name.trim().to_owned(),
            body: cmd.body.clone(),
            placeholders,
        }
        .into(),
    ])
}

pub fn delete_template(
    template: &Template,
    template_id: uuid::Uuid,
) -> Result<Vec<DomainEvent>, Rejection> {
    if !template.exists() {
        return Err(Rejection::UnknownTemplate { template_id });
    }
    Ok(vec![TemplateDeleted { template_id }.into()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn templates_fill_and_name_the_wrong_key() {
        let body = "Halo {{fullname}}, pesanan #{{order_id}} tanggal {{order_date}} sudah kami terima. Terima kasih {{ fullname }}!";
        assert_eq!(
            placeholders(body).unwrap(),
            ["fullname", "order_id", "order_date"]
        );
        let filled = fill(
            body,
            &data(&[
                ("fullname", "Mr. Smith"),
                ("order_id", "67"),
                ("order_date", "2018-10-09 17:30:00"),
            ]),
        )
        .unwrap();
        assert_eq!(
            filled,
            "Halo Mr. Smith, pesanan #67 tanggal 2018-10-09 17:30:00 sudah kami terima. Terima kasih Mr. Smith!"
        );
        assert_eq!(
            fill(body, &data(&[("fullname", "x"), ("order_id", "1")])),
            Err(Rejection::TemplateKeyMissing {
                key: "order_date".into()
            })
        );
        let extra = data(&[
            ("fullname", "x"),
            ("order_id", "1"),
            ("order_date", "d"),
            ("awb", "JNE1"),
        ]);
        assert_eq!(
            fill(body, &extra),
            Err(Rejection::TemplateKeyUnknown { key: "awb".into() })
        );
        assert!(placeholders("Halo {{nama").is_err());
        assert!(placeholders("Halo {{nama lengkap}}").is_err());
    }

    proptest::proptest! {
        /// Filling with exactly the template's keys puts every value in
        /// place of its placeholders; one key short names the first
        /// missing key, one key too many names the extra key.
        #[test]
        fn filling_is_exact_about_keys(
            names in proptest::collection::btree_set("[a-z_]{1,8}", 1..5),
            values in proptest::collection::vec("[A-Za-z0-9 .,#-]{0,12}", 5),
            drop_index in 0usize..5,
        ) {
            let names: Vec<String> = names.into_iter().collect();
            let body: String = names.iter().enumerate().map(|(i, n)| format!("<{i}>{{{{{n}}}}}")).collect();
            let data: BTreeMap<String, String> = names.iter().cloned().zip(values.iter().cloned()).collect();
            let expected: String = names.iter().enumerate().map(|(i, n)| format!("<{i}>{}", data[n])).collect();
            proptest::prop_assert_eq!(fill(&body, &data), Ok(expected));
            let missing = &names[drop_index % names.len()];
            let mut short = data.clone();
            short.remove(missing);
            proptest::prop_assert_eq!(fill(&body, &short), Err(Rejection::TemplateKeyMissing { key: missing.clone() }));
            let mut extra = data.clone();
            extra.insert("zz_extra_key".into(), "x".into());
            proptest::prop_assert_eq!(fill(&body, &extra), Err(Rejection::TemplateKeyUnknown { key: "zz_extra_key".into() }));
        }
    }

    #[test]
    fn conversation_ids_depend_on_channel_and_handle() {
        let shop = ShopId(uuid::Uuid::from_u128(1));
        let a = conversation_id(shop, ChatChannel::Whatsapp, "6281234567890");
        assert_eq!(
            a,
            conversation_id(shop, ChatChannel::Whatsapp, "6281234567890")
        );
        assert_ne!(
            a,
            conversation_id(shop, ChatChannel::Shopee, "6281234567890")
        );
        assert_ne!(
            a,
            conversation_id(
                ShopId(uuid::Uuid::from_u128(2)),
                ChatChannel::Whatsapp,
                "6281234567890"
            )
        );
    }
}

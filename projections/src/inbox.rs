//! The chat inbox (Forstok, Indoshopster): conversations newest first with
//! their last message, unread count (customer messages since staff last
//! wrote), status, labels and assignee; filters by status, label, channel,
//! assignee and date range; and the outbox: queued messages no sender has
//! finished with.
//!
//! A conversation's messages are not kept in memory: [`messages`] makes
//! them, with the delivery status of those queued for a sender (`queued`,
//! `sent`, `failed`), from the conversation's stream when they are asked
//! for. Every message and dispatch event of a conversation is in its
//! stream, so the stream alone gives the whole answer.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::NaiveDate;
use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::chat::{Attachment, Author, ChatChannel, ChatStatus, Delivery};
use kedai_engine::domain::ids::CustomerId;
use kedai_engine::{Position, RecordedEvent, Timestamp};
use serde::{Deserialize, Serialize};

use crate::At;
use crate::idmap::IdMap;
use crate::intern::{Interner, Text};
use crate::shop::ShopMeta;

/// Most conversations or messages one page holds.
pub const PAGE_MAX: usize = 500;

/// One message. Only a conversation's last one is kept in memory (for the
/// list); [`messages`] makes the others from the conversation's stream.
/// The rarely present parts are boxed, so a conversation's last message
/// is small when they are absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    pub message_id: uuid::Uuid,
    pub inbound: bool,
    /// `customer`, or the staff member's id.
    pub author: Text,
    /// Not interned (most texts are unique), but shared with the outbox.
    pub text: Arc<str>,
    pub attachment: Option<Box<Attachment>>,
    pub template_id: Option<uuid::Uuid>,
    pub at: Timestamp,
    /// For a message queued for a sender: how far it got.
    pub delivery: Option<Box<DeliveryView>>,
}

/// The delivery of a queued message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryView {
    pub status: Delivery,
    /// The normalised number it goes to.
    pub to: String,
    /// Attempts made (0 while queued).
    pub attempts: u32,
    /// When it was queued, sent or given up on.
    pub updated_at: Timestamp,
    /// The gateway's id for a sent message.
    pub gateway_message_id: Option<String>,
    /// Why a failed message failed.
    pub reason: Option<String>,
}

/// A queued message waiting for a sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub conversation_id: uuid::Uuid,
    pub message_id: uuid::Uuid,
    pub channel: ChatChannel,
    pub to: String,
    pub text: Arc<str>,
    pub queued_at: Timestamp,
    /// Position of the `MessageQueued` event: the outbox's order.
    pub position: Position,
}

/// One conversation as the inbox lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationView {
    pub conversation_id: uuid::Uuid,
    pub channel: ChatChannel,
    pub handle: Box<str>,
    pub name: Box<str>,
    pub customer_id: Option<CustomerId>,
    pub status: ChatStatus,
    pub labels: BTreeSet<String>,
    /// A staff id (interned: a shop has few staff).
    pub assignee: Option<Text>,
    pub started_at: Timestamp,
    pub last_activity: Timestamp,
    pub last_message: Option<MessageView>,
    pub unread: u32,
    pub messages: u32,
}

/// A list request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxQuery {
    pub status: Option<ChatStatus>,
    pub label: Option<String>,
    pub channel: Option<ChatChannel>,
    pub assignee: Option<String>,
    /// Last activity at or after.
    pub from: Option<Timestamp>,
    /// Last activity before.
    pub to: Option<Timestamp>,
    /// Continue after this conversation (the `next` of the previous page).
    pub after: Option<(Timestamp, uuid::Uuid)>,
    pub limit: usize,
}

/// A page of conversations.
#[derive(Debug)]
pub struct InboxPage<'a> {
    pub conversations: Vec<&'a ConversationView>,
    pub next: Option<(Timestamp, uuid::Uuid)>,
}

/// A message template (quick reply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateView {
    pub template_id: uuid::Uuid,
    pub name: String,
    pub body: String,
    pub placeholders: Vec<String>,
    pub deleted: bool,
}

/// A shop's conversations and templates.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Inbox {
    /// Boxed: a hash map's slots are up to half empty, so a slot is
    /// better a pointer than the whole conversation.
    conversations: IdMap<Box<ConversationView>>,
    templates: BTreeMap<uuid::Uuid, TemplateView>,
    /// Queued messages no sender has finished with, oldest first (by the
    /// position they were queued at).
    outbox: BTreeMap<Position, OutboxEntry>,
    /// Where each queued message is in `outbox`, by (conversation,
    /// message): message ids are unique within a conversation only.
    #[serde(skip)]
    outbox_index: BTreeMap<(uuid::Uuid, uuid::Uuid), Position>,
    /// Newest activity first.
    #[serde(skip)]
    recent: BTreeSet<(Reverse<Timestamp>, uuid::Uuid)>,
    /// Set during a rebuild: `recent` is made once at its end
    /// ([`Inbox::end_deferral`]) instead of kept up to date for every
    /// message (a B-tree removal and insertion each, 4% of a rebuild of
    /// the fixture mix on one thread).
    #[serde(skip)]
    recent_deferred: bool,
    /// Shares authors and assignees (a cache, not state).
    #[serde(skip)]
    interner: Interner,
}

impl PartialEq for Inbox {
    fn eq(&self, other: &Self) -> bool {
        self.conversations == other.conversations
            && self.templates == other.templates
            && self.outbox == other.outbox
    }
}

impl Inbox {
    /// Rebuilds the recency index (not serialised) after loading.
    pub fn rebuild_indexes(&mut self) {
        self.outbox_index = self
            .outbox
            .iter()
            .map(|(p, e)| ((e.conversation_id, e.message_id), *p))
            .collect();
        self.make_recent();
        for c in self.conversations.values_mut() {
            if let Some(m) = c.last_message.as_mut() {
                self.interner.share(&mut m.author);
            }
            if let Some(a) = c.assignee.as_mut() {
                self.interner.share(a);
            }
        }
        // A queued message is its conversation's last one while nothing
        // followed it: the outbox shares its text again.
        for e in self.outbox.values_mut() {
            if let Some(m) = self
                .conversations
                .get(&e.conversation_id)
                .and_then(|c| c.last_message.as_ref())
                .filter(|m| m.message_id == e.message_id && m.text == e.text)
            {
                e.text = m.text.clone();
            }
        }
    }

    /// The newest-first order, made from the conversations at once.
    fn make_recent(&mut self) {
        self.recent = self
            .conversations
            .values()
            .map(|c| (Reverse(c.last_activity), c.conversation_id))
            .collect();
        self.recent_deferred = false;
    }

    /// Leaves the newest-first order to [`Inbox::end_deferral`] (a
    /// rebuild calls both; nothing may list the conversations between).
    pub(crate) fn defer_recent(&mut self) {
        self.recent.clear();
        self.recent_deferred = true;
    }

    /// Makes the newest-first order that [`Inbox::defer_recent`] left.
    pub(crate) fn end_deferral(&mut self) {
        if self.recent_deferred {
            self.make_recent();
        }
    }

    pub fn apply(&mut self, at: At<'_>, event: &DomainEvent) {
        match event {
            DomainEvent::ConversationStarted(e) => {
                self.conversations.insert(
                    e.conversation_id,
                    Box::new(ConversationView {
                        conversation_id: e.conversation_id,
                        channel: e.channel,
                        handle: e.handle.as_str().into(),
                        name: e.name.as_str().into(),
                        customer_id: e.customer_id,
                        status: ChatStatus::Unserved,
                        labels: BTreeSet::new(),
                        assignee: None,
                        started_at: e.started_at,
                        last_activity: e.started_at,
                        last_message: None,
                        unread: 0,
                        messages: 0,
                    }),
                );
                if !self.recent_deferred {
                    self.recent
                        .insert((Reverse(e.started_at), e.conversation_id));
                }
            }
            DomainEvent::MessageReceived(_)
            | DomainEvent::MessageSent(_)
            | DomainEvent::MessagesImported(_) => {
                // The fields apart, so that the messages go to their
                // conversations as they are made (not through a list).
                let (interner, conversations, recent) = (
                    &mut self.interner,
                    &mut self.conversations,
                    &mut self.recent,
                );
                let deferred = self.recent_deferred;
                message_views(event, &mut |a| interner.str(a), &mut |id, m| {
                    let recent = if deferred { None } else { Some(&mut *recent) };
                    message(conversations, recent, id, m)
                });
            }
            DomainEvent::ConversationLabelAdded(e) => self.with(e.conversation_id, |c| {
                c.labels.insert(e.label.clone());
            }),
            DomainEvent::ConversationLabelRemoved(e) => self.with(e.conversation_id, |c| {
                c.labels.remove(&e.label);
            }),
            DomainEvent::ConversationAssigned(e) => {
                let staff = self.interner.str(&e.staff_id);
                self.with(e.conversation_id, |c| {
                    c.assignee = Some(staff);
                    if c.status != ChatStatus::Resolved {
                        c.status = ChatStatus::Mine;
                    }
                })
            }
            DomainEvent::ConversationUnassigned(e) => self.with(e.conversation_id, |c| {
                c.assignee = None;
                if c.status == ChatStatus::Mine {
                    let last_inbound = c.last_message.as_ref().is_some_and(|m| m.inbound);
                    c.status = if last_inbound {
                        ChatStatus::Unserved
                    } else {
                        ChatStatus::Served
                    };
                }
            }),
            DomainEvent::ConversationResolved(e) => {
                self.with(e.conversation_id, |c| c.status = ChatStatus::Resolved)
            }
            DomainEvent::ConversationReopened(e) => self.with(e.conversation_id, |c| {
                c.status = if c.assignee.is_some() {
                    ChatStatus::Mine
                } else {
                    ChatStatus::Unserved
                };
            }),
            DomainEvent::MessageQueued(e) => {
                // The message was recorded in the same append, just before:
                // it is the conversation's last one.
                let text = self
                    .conversations
                    .get_mut(&e.conversation_id)
                    .and_then(|c| c.last_message.as_mut())
                    .filter(|m| m.message_id == e.message_id)
                    .map(|m| {
                        m.delivery = Some(Box::new(queued(e)));
                        m.text.clone()
                    });
                self.outbox_index
                    .insert((e.conversation_id, e.message_id), at.position);
                self.outbox.insert(
                    at.position,
                    OutboxEntry {
                        conversation_id: e.conversation_id,
                        message_id: e.message_id,
                        channel: e.channel,
                        to: e.to.clone(),
                        text: text.unwrap_or_default(),
                        queued_at: e.queued_at,
                        position: at.position,
                    },
                );
            }
            DomainEvent::MessageDispatched(_) | DomainEvent::MessageDispatchFailed(_) => {
                let Some((conversation, message)) = dispatched(event) else {
                    return;
                };
                // Out of the outbox, and shown on the last message if it
                // is that one.
                if let Some(p) = self.outbox_index.remove(&(conversation, message)) {
                    self.outbox.remove(&p);
                }
                if let Some(d) = self
                    .conversations
                    .get_mut(&conversation)
                    .and_then(|c| c.last_message.as_mut())
                    .filter(|m| m.message_id == message)
                    .and_then(|m| m.delivery.as_mut())
                {
                    settle(d, event);
                }
            }
            _ => {}
        }
    }

    /// Queued messages no sender has finished with, oldest first.
    pub fn outbox(&self) -> impl Iterator<Item = &OutboxEntry> {
        self.outbox.values()
    }

    /// Queued messages waiting.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    fn with(&mut self, id: uuid::Uuid, f: impl FnOnce(&mut ConversationView)) {
        if let Some(c) = self.conversations.get_mut(&id) {
            f(c);
        }
    }

    /// Templates not deleted, by name.
    pub fn templates(&self) -> Vec<&TemplateView> {
        let mut list: Vec<&TemplateView> = self.templates.values().filter(|t| !t.deleted).collect();
        list.sort_by(|a, b| a.name.cmp(&b.name).then(a.template_id.cmp(&b.template_id)));
        list
    }

    pub fn template(&self, id: uuid::Uuid) -> Option<&TemplateView> {
        self.templates.get(&id).filter(|t| !t.deleted)
    }

    /// Every conversation, in no particular order.
    pub fn conversations(&self) -> impl Iterator<Item = &ConversationView> {
        self.conversations.values().map(|c| &**c)
    }

    pub fn get(&self, id: uuid::Uuid) -> Option<&ConversationView> {
        self.conversations.get(&id).map(|c| &**c)
    }

    /// Conversations per status.
    pub fn counts(&self) -> BTreeMap<ChatStatus, usize> {
        let mut counts: BTreeMap<ChatStatus, usize> =
            ChatStatus::ALL.iter().map(|s| (*s, 0)).collect();
        for c in self.conversations.values() {
            *counts.entry(c.status).or_default() += 1;
        }
        counts
    }

    /// Conversations per status among those last active from `from` to
    /// `to` (days in the shop's time zone, both included): the customer
    /// service report's count over its range. Each is counted in the status
    /// it has now.
    pub fn counts_between(
        &self,
        meta: &ShopMeta,
        from: NaiveDate,
        to: NaiveDate,
    ) -> BTreeMap<ChatStatus, usize> {
        let mut counts: BTreeMap<ChatStatus, usize> =
            ChatStatus::ALL.iter().map(|s| (*s, 0)).collect();
        for c in self.conversations.values() {
            if (from..=to).contains(&meta.local_date(c.last_activity)) {
                *counts.entry(c.status).or_default() += 1;
            }
        }
        counts
    }

    /// A page of conversations, newest activity first.
    pub fn list(&self, q: &InboxQuery) -> InboxPage<'_> {
        debug_assert!(
            !self.recent_deferred,
            "the inbox is listed during a rebuild"
        );
        let limit = q.limit.clamp(1, PAGE_MAX);
        let start = match q.after {
            Some((t, id)) => std::ops::Bound::Excluded((Reverse(t), id)),
            None => std::ops::Bound::Unbounded,
        };
        let mut page = Vec::with_capacity(limit + 1);
        for (_, id) in self.recent.range((start, std::ops::Bound::Unbounded)) {
            let c = &self.conversations[id];
            let wanted = q.status.is_none_or(|s| c.status == s)
                && q.label.as_ref().is_none_or(|l| c.labels.contains(l))
                && q.channel.is_none_or(|ch| c.channel == ch)
                && q.assignee
                    .as_ref()
                    .is_none_or(|a| c.assignee.as_deref() == Some(a.as_str()))
                && q.from.is_none_or(|f| c.last_activity >= f)
                && q.to.is_none_or(|t| c.last_activity < t);
            if wanted {
                page.push(&**c);
                if page.len() > limit {
                    break;
                }
            }
        }
        let next = if page.len() > limit {
            page.pop();
            page.last().map(|c| (c.last_activity, c.conversation_id))
        } else {
            None
        };
        InboxPage {
            conversations: page,
            next,
        }
    }
}

/// A message of conversation `id` (if the shop has it): the conversation's
/// last, and its activity in `recent` (unless that is made later, in a
/// rebuild: `None`).
fn message(
    conversations: &mut IdMap<Box<ConversationView>>,
    recent: Option<&mut BTreeSet<(Reverse<Timestamp>, uuid::Uuid)>>,
    id: uuid::Uuid,
    m: MessageView,
) {
    let Some(c) = conversations.get_mut(&id) else {
        return;
    };
    match recent {
        None => c.last_activity = c.last_activity.max(m.at),
        Some(recent) => {
            recent.remove(&(Reverse(c.last_activity), id));
            c.last_activity = c.last_activity.max(m.at);
            recent.insert((Reverse(c.last_activity), id));
        }
    }
    c.messages += 1;
    if m.inbound {
        c.unread += 1;
        if c.status == ChatStatus::Served {
            c.status = ChatStatus::Unserved;
        }
    } else {
        c.unread = 0;
        if matches!(c.status, ChatStatus::Unserved) {
            c.status = ChatStatus::Served;
        }
    }
    c.last_message = Some(m);
}

/// The messages an event records, with the conversation they are in
/// (`f` gets each); `author` makes the author's text.
fn message_views(
    event: &DomainEvent,
    author: &mut dyn FnMut(&str) -> Text,
    f: &mut dyn FnMut(uuid::Uuid, MessageView),
) {
    match event {
        DomainEvent::MessageReceived(e) => f(
            e.conversation_id,
            MessageView {
                message_id: e.message_id,
                inbound: true,
                author: author("customer"),
                text: e.text.as_str().into(),
                attachment: e.attachment.clone().map(Box::new),
                template_id: None,
                at: e.sent_at,
                delivery: None,
            },
        ),
        DomainEvent::MessageSent(e) => f(
            e.conversation_id,
            MessageView {
                message_id: e.message_id,
                inbound: false,
                author: author(&e.staff_id),
                text: e.text.as_str().into(),
                attachment: e.attachment.clone().map(Box::new),
                template_id: e.template_id,
                at: e.sent_at,
                delivery: None,
            },
        ),
        DomainEvent::MessagesImported(e) => {
            for m in &e.messages {
                let (inbound, author) = match &m.author {
                    Author::Customer => (true, author("customer")),
                    Author::Staff { staff_id } => (false, author(staff_id)),
                };
                f(
                    e.conversation_id,
                    MessageView {
                        message_id: m.message_id,
                        inbound,
                        author,
                        text: m.text.as_str().into(),
                        attachment: m.attachment.clone().map(Box::new),
                        template_id: None,
                        at: m.sent_at,
                        delivery: None,
                    },
                );
            }
        }
        _ => {}
    }
}

/// The delivery of a message just queued.
fn queued(e: &kedai_engine::domain::events::MessageQueued) -> DeliveryView {
    DeliveryView {
        status: Delivery::Queued,
        to: e.to.clone(),
        attempts: 0,
        updated_at: e.queued_at,
        gateway_message_id: None,
        reason: None,
    }
}

/// The (conversation, message) of a dispatch outcome.
fn dispatched(event: &DomainEvent) -> Option<(uuid::Uuid, uuid::Uuid)> {
    match event {
        DomainEvent::MessageDispatched(e) => Some((e.conversation_id, e.message_id)),
        DomainEvent::MessageDispatchFailed(e) => Some((e.conversation_id, e.message_id)),
        _ => None,
    }
}

/// A queued message's delivery after its dispatch outcome.
fn settle(d: &mut DeliveryView, event: &DomainEvent) {
    match event {
        DomainEvent::MessageDispatched(e) => {
            d.status = Delivery::Sent;
            d.attempts = e.attempts;
            d.updated_at = e.dispatched_at;
            d.gateway_message_id = e.gateway_message_id.clone();
        }
        DomainEvent::MessageDispatchFailed(e) => {
            d.status = Delivery::Failed;
            d.attempts = e.attempts;
            d.updated_at = e.failed_at;
            d.reason = Some(e.reason.clone());
        }
        _ => {}
    }
}

/// A conversation's messages, oldest first, with the delivery status of
/// those queued for a sender, from the events of its stream (as the store
/// reads them) up to position `until`.
///
/// Messages are read from the log rather than kept in memory, where they
/// would be the biggest part of the inbox. The fold is the projection's:
/// messages count from the conversation's start, and a dispatch outcome
/// settles the latest message of its id.
pub fn messages(
    events: &[RecordedEvent],
    until: Position,
) -> Result<Vec<MessageView>, crate::ApplyError> {
    let mut list: Vec<MessageView> = Vec::new();
    let mut started = false;
    for e in events.iter().filter(|e| e.position <= until) {
        let decoded =
            DomainEvent::decode(&e.event_type, &e.payload).map_err(|source| crate::ApplyError {
                position: e.position,
                source,
            })?;
        let Some(event) = decoded else {
            continue;
        };
        match &event {
            DomainEvent::ConversationStarted(_) => started = true,
            DomainEvent::MessageQueued(q) => {
                if let Some(m) = latest(&mut list, q.message_id) {
                    m.delivery = Some(Box::new(queued(q)));
                }
            }
            DomainEvent::MessageDispatched(_) | DomainEvent::MessageDispatchFailed(_) => {
                if let Some((_, id)) = dispatched(&event)
                    && let Some(d) = latest(&mut list, id).and_then(|m| m.delivery.as_mut())
                {
                    settle(d, &event);
                }
            }
            _ if started => {
                message_views(&event, &mut |a| a.into(), &mut |_, m| list.push(m));
            }
            _ => {}
        }
    }
    Ok(list)
}

/// The latest message of id `id` (ids are unique within a conversation;
/// the latest is the one a dispatch event is about, as in the fold).
fn latest(list: &mut [MessageView], id: uuid::Uuid) -> Option<&mut MessageView> {
    list.iter_mut().rev().find(|m| m.message_id == id)
}

/// One page of a conversation's messages: after the `after`-th, at most
/// `limit` (1 to [`PAGE_MAX`]).
pub fn page(all: &[MessageView], after: usize, limit: usize) -> &[MessageView] {
    let start = after.min(all.len());
    &all[start..(start + limit.clamp(1, PAGE_MAX)).min(all.len())]
}

//! The contract between cambot and a chat channel.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use cambot_core::UserStore;
use cambot_protocol::Attachment;
use cambot_protocol::ChatJid;
use cambot_protocol::ChatMetadata;
use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::InboundMessage;
use cambot_protocol::RegisteredGroup;
use cambot_protocol::StoredAttachment;
use cambot_protocol::TenantId;

use crate::error::ChannelError;
use crate::error::HostError;

/// A boxed, sendable future: what trait-object methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One reply to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound<'a> {
    /// Stable per reply, unique across the database: channels that can deduplicate
    /// (idempotency keys, client message ids) should use it so a redelivery after a crash is not
    /// shown twice.
    pub delivery_id: i64,
    /// The tenant the reply was committed for: a channel delivers it only to that tenant's chat
    /// (two tenants may each have a chat with the same jid).
    pub tenant: &'a TenantId,
    pub chat_jid: &'a ChatJid,
    pub text: &'a str,
}

/// A chat channel (terminal, web chat, Telegram, ...). Implementations live in this crate only;
/// the orchestrator sees `Arc<dyn Channel>`.
///
/// Contract for implementers:
/// - `connect` is called once by [`crate::load_channels`] before any other method; inbound
///   traffic is reported through the [`ChannelHost`] given at construction, and a message counts
///   as received only after `on_message` returned `Ok` (it is then durably stored).
/// - `send_message` returns `Ok` only when the channel accepted the text for delivery; an `Err`
///   keeps the reply pending and it is retried later.
/// - `owns_jid` must be cheap and pure: the router calls it on every reply. It answers for a
///   `(tenant, jid)` pair: a channel that serves one tenant, or whose jids name their tenant,
///   owns nothing of another tenant, so a reply, a delta or an indicator of tenant B never
///   reaches tenant A's chat even when both have a chat with the same jid.
pub trait Channel: Send + Sync {
    /// Short lower-case name (`cli`, `web`).
    fn name(&self) -> &str;

    fn connect(&self) -> BoxFuture<'_, Result<(), ChannelError>>;

    fn send_message<'a>(&'a self, message: Outbound<'a>)
    -> BoxFuture<'a, Result<(), ChannelError>>;

    fn is_connected(&self) -> bool;

    fn owns_jid(&self, tenant: &TenantId, jid: &ChatJid) -> bool;

    fn disconnect(&self) -> BoxFuture<'_, Result<(), ChannelError>>;

    /// Shows or hides a typing indicator. Failures are not fatal; the default does nothing.
    fn set_typing<'a>(
        &'a self,
        _tenant: &'a TenantId,
        _jid: &'a ChatJid,
        _on: bool,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async { Ok(()) })
    }

    /// Re-reads chat names from the remote service; the default does nothing.
    fn sync_metadata(&self, _force: bool) -> BoxFuture<'_, Result<(), ChannelError>> {
        Box::pin(async { Ok(()) })
    }

    /// Streams reply text as the model produces it (before the final reply arrives through
    /// `send_message`). Channels that cannot stream ignore it.
    fn stream_delta<'a>(
        &'a self,
        _tenant: &'a TenantId,
        _jid: &'a ChatJid,
        _text: &'a str,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// What a channel asks of cambot to register a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRegistrationRequest {
    pub tenant: TenantId,
    pub jid: ChatJid,
    pub name: String,
    pub folder: GroupFolder,
    pub trigger: String,
    pub requires_trigger: Option<bool>,
}

/// The callbacks cambot gives every channel (the seed's `ChannelOpts` callbacks).
pub trait ChannelHost: Send + Sync {
    /// Stores an inbound message. `Ok` means it is durable and will be processed exactly once.
    fn on_message(&self, message: InboundMessage) -> BoxFuture<'_, Result<(), HostError>>;

    /// Stores a file received in `jid` (a registered chat) in its group's uploads directory,
    /// where that group's runs see it read-only; the message that carries it then names the
    /// returned id in [`InboundMessage::attachments`]. Size and quota refusals are
    /// [`HostError::TooLarge`] with a message for the sender. Hosts that keep no files refuse
    /// (the default).
    fn store_attachment(
        &self,
        _tenant: &TenantId,
        _jid: &ChatJid,
        _attachment: Attachment,
    ) -> BoxFuture<'_, Result<StoredAttachment, HostError>> {
        Box::pin(async { Err(HostError::Invalid("this host keeps no attachments".into())) })
    }

    /// Records chat metadata (names, activity) for any chat, registered or not.
    fn on_chat_metadata(&self, metadata: ChatMetadata) -> BoxFuture<'_, Result<(), HostError>>;

    /// The tenant's registered chats.
    fn registered_groups(
        &self,
        tenant: &TenantId,
    ) -> BoxFuture<'_, Result<Vec<RegisteredGroup>, HostError>>;

    /// Registers (or updates) a chat's group. Settings not named in the request are kept.
    fn register_group(
        &self,
        request: GroupRegistrationRequest,
    ) -> BoxFuture<'_, Result<RegisteredGroup, HostError>>;

    /// Something happened to a channel that the host may act on. The default ignores it.
    fn on_channel_event(&self, _event: ChannelEvent) {}

    /// The store of users, signing keys, refresh tokens and web sessions, for the web
    /// channel. Hosts without one return `None` (the default), and the web channel then
    /// refuses to start.
    fn users(&self) -> Option<Arc<dyn UserStore>> {
        None
    }

    /// cambot's data directory, for channels that keep files (web chat uploads). Hosts
    /// without one return `None` (the default), and such channels refuse to start.
    fn data_layout(&self) -> Option<DataLayout> {
        None
    }

    /// Seals the key material a channel keeps in the store (the web channel's token signing
    /// keys). Hosts without one return `None` (the default), and the web channel then refuses
    /// to start: it never stores a private key in plaintext.
    fn key_sealer(&self) -> Option<Arc<dyn KeySealer>> {
        None
    }
}

/// Seals and opens key material bound to a tenant and a name, so that the store holds only
/// ciphertext (cambot implements it over its credential vault).
pub trait KeySealer: Send + Sync {
    /// `key` sealed for `tenant` and `name`: opaque bytes to store.
    fn seal<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
        key: &'a [u8],
    ) -> BoxFuture<'a, Result<Vec<u8>, HostError>>;

    /// What [`KeySealer::seal`] sealed for the same tenant and name; an error for anything
    /// else (another tenant's or name's ciphertext, altered bytes).
    fn open<'a>(
        &'a self,
        tenant: &'a TenantId,
        name: &'a str,
        sealed: &'a [u8],
    ) -> BoxFuture<'a, Result<zeroize::Zeroizing<Vec<u8>>, HostError>>;
}

/// Channel lifecycle notices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEvent {
    /// The channel's input ended (the terminal's stdin reached EOF). Output still works.
    InputClosed { channel: String },
}

/// Everything a channel gets at construction.
#[derive(Clone)]
pub struct ChannelOpts {
    pub host: Arc<dyn ChannelHost>,
    /// The assistant's display name (`Andy`): replies are shown as `<name>: <text>`.
    pub assistant_name: String,
}

impl std::fmt::Debug for ChannelOpts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelOpts")
            .field("assistant_name", &self.assistant_name)
            .finish_non_exhaustive()
    }
}

//! A channel for tests: owns every jid with a given prefix (of one tenant or all), records what it was asked to send,
//! optionally appends each delivery to a file (for tests that watch a child process), and lets
//! the test inject inbound messages through the real host callbacks.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use cambot_channels::BoxFuture;
use cambot_channels::Channel;
use cambot_channels::ChannelError;
use cambot_channels::ChannelOpts;
use cambot_channels::GroupRegistrationRequest;
use cambot_channels::HostError;
use cambot_channels::Outbound;
use cambot_protocol::ChatJid;
use cambot_protocol::ChatMetadata;
use cambot_protocol::GroupFolder;
use cambot_protocol::InboundMessage;
use cambot_protocol::RegisteredGroup;
use cambot_protocol::TenantId;

/// One delivery the channel accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub delivery_id: i64,
    pub tenant: String,
    pub chat_jid: String,
    pub text: String,
}

pub struct FakeChannel {
    opts: ChannelOpts,
    prefix: String,
    /// When set, only this tenant's chats are owned (a channel bound to one tenant's account).
    tenant: Option<TenantId>,
    connected: AtomicBool,
    /// While set, every send fails (a disconnected remote service).
    refuse: AtomicBool,
    sent: Mutex<Vec<Delivered>>,
    deltas: Mutex<Vec<(String, String)>>,
    typing: Mutex<Vec<(String, bool)>>,
    delivery_log: Option<PathBuf>,
    sent_notify: tokio::sync::Notify,
    next_id: AtomicU64,
}

impl std::fmt::Debug for FakeChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeChannel")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl FakeChannel {
    /// Owns every jid starting with `prefix` (for example `fake:`).
    pub fn new(opts: ChannelOpts, prefix: &str) -> Arc<Self> {
        Arc::new(Self::build(opts, prefix, None))
    }

    /// Owns the jids starting with `prefix` of `tenant` only.
    pub fn for_tenant(opts: ChannelOpts, prefix: &str, tenant: TenantId) -> Arc<Self> {
        let mut channel = Self::build(opts, prefix, None);
        channel.tenant = Some(tenant);
        Arc::new(channel)
    }

    /// Like [`FakeChannel::new`], and appends `<delivery_id>\t<jid>\t<text>` per accepted send to
    /// `path` (one `write` per line, so a killed process never leaves half a line).
    pub fn with_delivery_log(opts: ChannelOpts, prefix: &str, path: PathBuf) -> Arc<Self> {
        Arc::new(Self::build(opts, prefix, Some(path)))
    }

    fn build(opts: ChannelOpts, prefix: &str, delivery_log: Option<PathBuf>) -> Self {
        Self {
            opts,
            prefix: prefix.to_owned(),
            tenant: None,
            connected: AtomicBool::new(false),
            refuse: AtomicBool::new(false),
            sent: Mutex::new(Vec::new()),
            deltas: Mutex::new(Vec::new()),
            typing: Mutex::new(Vec::new()),
            delivery_log,
            sent_notify: tokio::sync::Notify::new(),
            next_id: AtomicU64::new(0),
        }
    }

    /// Makes sends fail (true) or succeed again (false).
    pub fn set_refusing(&self, refuse: bool) {
        self.refuse.store(refuse, Ordering::SeqCst);
    }

    pub fn sent(&self) -> Vec<Delivered> {
        crate::locks::lock("fake channel sends", &self.sent).clone()
    }

    pub fn deltas(&self) -> Vec<(String, String)> {
        crate::locks::lock("fake channel deltas", &self.deltas).clone()
    }

    /// Every typing indicator change, in order.
    pub fn typing(&self) -> Vec<(String, bool)> {
        crate::locks::lock("fake channel typing", &self.typing).clone()
    }

    /// Waits until at least `n` sends were accepted (or the timeout passes).
    pub async fn wait_sent(&self, n: usize, timeout: std::time::Duration) -> Vec<Delivered> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.sent_notify.notified();
            let sent = self.sent();
            if sent.len() >= n || tokio::time::Instant::now() >= deadline {
                return sent;
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// Registers a chat of this channel through the host.
    pub async fn register(
        &self,
        tenant: &TenantId,
        jid: &str,
        folder: &str,
        requires_trigger: Option<bool>,
    ) -> Result<RegisteredGroup, HostError> {
        self.opts
            .host
            .register_group(GroupRegistrationRequest {
                tenant: tenant.clone(),
                jid: ChatJid::new(jid).map_err(HostError::InvalidId)?,
                name: jid.to_owned(),
                folder: GroupFolder::new(folder).map_err(HostError::InvalidId)?,
                trigger: format!("@{}", self.opts.assistant_name),
                requires_trigger,
            })
            .await
    }

    /// Delivers an inbound message through the host, as a real channel would.
    pub async fn inject(
        &self,
        tenant: &TenantId,
        jid: &str,
        sender: &str,
        content: &str,
    ) -> Result<String, HostError> {
        let n = self.next_id.fetch_add(1, Ordering::SeqCst);
        let id = format!("fake-{n}");
        self.inject_with_id(tenant, jid, &id, sender, content)
            .await?;
        Ok(id)
    }

    /// Delivers an inbound message with a chosen id.
    pub async fn inject_with_id(
        &self,
        tenant: &TenantId,
        jid: &str,
        id: &str,
        sender: &str,
        content: &str,
    ) -> Result<(), HostError> {
        let chat_jid = ChatJid::new(jid).map_err(HostError::InvalidId)?;
        let timestamp = chrono_now();
        self.opts
            .host
            .on_chat_metadata(ChatMetadata {
                tenant: tenant.clone(),
                chat_jid: chat_jid.clone(),
                timestamp: timestamp.clone(),
                name: None,
                channel: Some("fake".into()),
                is_group: Some(true),
            })
            .await?;
        self.opts
            .host
            .on_message(InboundMessage {
                tenant: tenant.clone(),
                chat_jid,
                id: id.to_owned(),
                sender: format!("{sender}@fake"),
                sender_name: sender.to_owned(),
                content: content.to_owned(),
                timestamp,
                is_from_me: false,
                is_bot_message: false,
                attachments: Vec::new(),
            })
            .await
    }
}

fn chrono_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    cambot_core::time::ms_to_rfc3339(i64::try_from(now.as_millis()).unwrap_or(0))
}

impl Channel for FakeChannel {
    fn name(&self) -> &str {
        "fake"
    }

    fn connect(&self) -> BoxFuture<'_, Result<(), ChannelError>> {
        self.connected.store(true, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }

    fn send_message<'a>(
        &'a self,
        message: Outbound<'a>,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            if !self.connected.load(Ordering::SeqCst) || self.refuse.load(Ordering::SeqCst) {
                return Err(ChannelError::NotConnected {
                    channel: "fake".into(),
                });
            }
            if !self.owns_jid(message.tenant, message.chat_jid) {
                return Err(ChannelError::Delivery {
                    channel: "fake".into(),
                    jid: message.chat_jid.to_string(),
                    reason: format!("not a chat of tenant {}", message.tenant),
                });
            }
            if let Some(path) = &self.delivery_log {
                let line = format!(
                    "{}\t{}\t{}\n",
                    message.delivery_id,
                    message.chat_jid,
                    message.text.replace(['\n', '\t'], " ")
                );
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| ChannelError::Io {
                        channel: "fake".into(),
                        source,
                    })?;
                file.write_all(line.as_bytes())
                    .map_err(|source| ChannelError::Io {
                        channel: "fake".into(),
                        source,
                    })?;
            }
            crate::locks::lock("fake channel sends", &self.sent).push(Delivered {
                delivery_id: message.delivery_id,
                tenant: message.tenant.to_string(),
                chat_jid: message.chat_jid.to_string(),
                text: message.text.to_owned(),
            });
            self.sent_notify.notify_waiters();
            Ok(())
        })
    }

    fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    fn owns_jid(&self, tenant: &TenantId, jid: &ChatJid) -> bool {
        self.tenant.as_ref().is_none_or(|t| t == tenant) && jid.as_str().starts_with(&self.prefix)
    }

    fn disconnect(&self) -> BoxFuture<'_, Result<(), ChannelError>> {
        self.connected.store(false, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }

    fn set_typing<'a>(
        &'a self,
        _tenant: &'a TenantId,
        jid: &'a ChatJid,
        on: bool,
    ) -> BoxFuture<'a, Result<(), ChannelError>> {
        crate::locks::lock("fake channel typing", &self.typing).push((jid.to_string(), on));
        Box::pin(async { Ok(()) })
    }

    fn stream_delta<'a>(
        &'a self,
        _tenant: &'a TenantId,
        jid: &'a ChatJid,
        text: &'a str,
    ) -> BoxFuture<'a, ()> {
        crate::locks::lock("fake channel deltas", &self.deltas)
            .push((jid.to_string(), text.to_owned()));
        Box::pin(async {})
    }
}

//! The [`ChannelHost`] cambot gives its channels: inbound messages are stored and routed, chat
//! metadata stored, registrations validated and persisted.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use cambot_channels::BoxFuture;
use cambot_channels::ChannelEvent;
use cambot_channels::ChannelHost;
use cambot_channels::GroupRegistrationRequest;
use cambot_channels::HostError;
use cambot_core::GroupRegistration;
use cambot_protocol::Attachment;
use cambot_protocol::ChatJid;
use cambot_protocol::ChatMetadata;
use cambot_protocol::DataLayout;
use cambot_protocol::GroupFolder;
use cambot_protocol::InboundMessage;
use cambot_protocol::RegisteredGroup;
use cambot_protocol::StoredAttachment;
use cambot_protocol::TenantId;
use tokio::sync::mpsc;

use crate::locks;
use crate::router::Router;
use crate::uploads::UploadError;
use crate::uploads::Uploads;
use crate::uploads::UploadsConfig;

/// Channel lifecycle notices for the daemon (bounded; a full channel drops the notice).
pub type ChannelEvents = mpsc::Sender<ChannelEvent>;

/// Metadata last written per chat: (name, channel, is_group, when).
/// Per tenant and chat (nested, so that the lookup made for every message borrows its ids
/// instead of cloning them): the metadata last written, and when.
type MetadataCache =
    HashMap<TenantId, HashMap<ChatJid, (Option<String>, Option<String>, Option<bool>, Instant)>>;

/// Unchanged metadata is written again at most this often (it only refreshes activity time,
/// which every stored message refreshes anyway).
const METADATA_REFRESH: Duration = Duration::from_secs(60);

/// The host side of every channel.
pub struct RouterHost {
    router: Arc<Router>,
    layout: DataLayout,
    events: ChannelEvents,
    metadata: Mutex<MetadataCache>,
    uploads: Uploads,
    /// Set once the daemon has installed the connected channels. Before that a message is
    /// stored but not routed: its run could not find the channel to answer through. The
    /// daemon's recovery pass right after installing them routes what arrived meanwhile.
    ready: std::sync::atomic::AtomicBool,
    /// Seals the web channel's signing keys (the vault, when the daemon opened one).
    key_sealer: Option<Arc<dyn cambot_channels::KeySealer>>,
}

impl RouterHost {
    pub fn new(router: Arc<Router>, layout: DataLayout, events: ChannelEvents) -> Self {
        Self {
            router,
            uploads: Uploads::new(layout.clone(), UploadsConfig::default()),
            layout,
            events,
            metadata: Mutex::new(HashMap::new()),
            ready: std::sync::atomic::AtomicBool::new(false),
            key_sealer: None,
        }
    }

    /// Attachment limits (`[uploads]`) other than the defaults.
    pub fn with_uploads(mut self, cfg: UploadsConfig) -> Self {
        self.uploads = Uploads::new(self.layout.clone(), cfg);
        self
    }

    /// The group folder of a registered chat.
    async fn folder_of(&self, tenant: &TenantId, jid: &ChatJid) -> Result<GroupFolder, HostError> {
        self.router
            .store()
            .registered_groups(tenant)
            .await?
            .into_iter()
            .find(|g| &g.jid == jid)
            .map(|g| g.folder)
            .ok_or(HostError::NotFound)
    }

    /// The message's text with one line per attachment (path in the sandbox, sniffed type).
    async fn with_attachments(
        &self,
        mut message: InboundMessage,
    ) -> Result<InboundMessage, HostError> {
        let ids = std::mem::take(&mut message.attachments);
        if ids.is_empty() {
            return Ok(message);
        }
        let folder = self.folder_of(&message.tenant, &message.chat_jid).await?;
        let mut stored = Vec::with_capacity(ids.len());
        for id in &ids {
            stored.push(
                self.uploads
                    .lookup(&message.tenant, &folder, id)
                    .await
                    .map_err(upload_error)?,
            );
        }
        let lines = crate::uploads::describe(&stored);
        message.content = if message.content.trim().is_empty() {
            lines
        } else {
            format!("{}\n{lines}", message.content)
        };
        Ok(message)
    }

    /// Gives channels `sealer` for the key material they store (see
    /// [`ChannelHost::key_sealer`]).
    pub fn with_key_sealer(mut self, sealer: Arc<dyn cambot_channels::KeySealer>) -> Self {
        self.key_sealer = Some(sealer);
        self
    }

    /// Routes messages as they arrive from now on (see the `ready` field).
    pub fn set_ready(&self) {
        self.ready.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl ChannelHost for RouterHost {
    fn on_message(&self, message: InboundMessage) -> BoxFuture<'_, Result<(), HostError>> {
        Box::pin(async move {
            let message = self.with_attachments(message).await?;
            let arrival = self.router.store().store_message(message).await?;
            if !arrival.message.is_bot_message
                && self.ready.load(std::sync::atomic::Ordering::SeqCst)
            {
                self.router.route_stored(&arrival).await;
            }
            Ok(())
        })
    }

    fn store_attachment(
        &self,
        tenant: &TenantId,
        jid: &ChatJid,
        attachment: Attachment,
    ) -> BoxFuture<'_, Result<StoredAttachment, HostError>> {
        let (tenant, jid) = (tenant.clone(), jid.clone());
        Box::pin(async move {
            let folder = self.folder_of(&tenant, &jid).await?;
            let stored = self
                .uploads
                .store(&tenant, &folder, attachment)
                .await
                .map_err(upload_error)?;
            tracing::info!(%tenant, group = %folder, id = %stored.id, size = stored.size, sniffed = %stored.sniffed_type, "attachment stored");
            Ok(stored)
        })
    }

    fn on_chat_metadata(&self, metadata: ChatMetadata) -> BoxFuture<'_, Result<(), HostError>> {
        let now = Instant::now();
        let unchanged = {
            let cache = locks::lock("chat metadata cache", &self.metadata);
            cache
                .get(&metadata.tenant)
                .and_then(|chats| chats.get(&metadata.chat_jid))
                .is_some_and(|(name, channel, is_group, at)| {
                    *name == metadata.name
                        && *channel == metadata.channel
                        && *is_group == metadata.is_group
                        && now.duration_since(*at) < METADATA_REFRESH
                })
        };
        Box::pin(async move {
            if unchanged {
                return Ok(());
            }
            let (tenant, chat, name, channel, is_group) = (
                metadata.tenant.clone(),
                metadata.chat_jid.clone(),
                metadata.name.clone(),
                metadata.channel.clone(),
                metadata.is_group,
            );
            self.router.store().store_chat_metadata(metadata).await?;
            locks::lock("chat metadata cache", &self.metadata)
                .entry(tenant)
                .or_default()
                .insert(chat, (name, channel, is_group, now));
            Ok(())
        })
    }

    fn registered_groups(
        &self,
        tenant: &TenantId,
    ) -> BoxFuture<'_, Result<Vec<RegisteredGroup>, HostError>> {
        let tenant = tenant.clone();
        Box::pin(async move { Ok(self.router.store().registered_groups(&tenant).await?) })
    }

    fn register_group(
        &self,
        request: GroupRegistrationRequest,
    ) -> BoxFuture<'_, Result<RegisteredGroup, HostError>> {
        Box::pin(register(&self.router, &self.layout, request))
    }

    fn on_channel_event(&self, event: ChannelEvent) {
        if self.events.try_send(event).is_err() {
            tracing::debug!("channel event dropped (nobody listening or queue full)");
        }
    }

    fn users(&self) -> Option<Arc<dyn cambot_core::UserStore>> {
        Some(Arc::clone(self.router.store()) as Arc<dyn cambot_core::UserStore>)
    }

    fn data_layout(&self) -> Option<DataLayout> {
        Some(self.layout.clone())
    }

    fn key_sealer(&self) -> Option<Arc<dyn cambot_channels::KeySealer>> {
        self.key_sealer.clone()
    }
}

/// An upload failure as the channel reports it to the sender.
fn upload_error(e: UploadError) -> HostError {
    match e {
        e if e.is_over_limit() => HostError::TooLarge(e.to_string()),
        e @ (UploadError::Empty | UploadError::Unknown(_)) => HostError::Invalid(e.to_string()),
        e => {
            tracing::warn!(error = %e, "storing an attachment failed");
            HostError::Invalid("the attachment could not be stored".to_owned())
        }
    }
}

/// Validates and stores a registration and creates the group's folder.
pub async fn register(
    router: &Router,
    layout: &DataLayout,
    request: GroupRegistrationRequest,
) -> Result<RegisteredGroup, HostError> {
    if request.name.trim().is_empty() {
        return Err(HostError::Invalid("group name must not be empty".into()));
    }
    if request.trigger.trim().is_empty() {
        return Err(HostError::Invalid("trigger must not be empty".into()));
    }
    let dir = layout.group_dir(&request.tenant, &request.folder);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| HostError::Directory {
            path: dir.clone(),
            source: Arc::new(e),
        })?;
    router
        .register_group(|store| async move {
            store
                .register_group(GroupRegistration {
                    tenant: request.tenant,
                    jid: request.jid,
                    name: request.name,
                    folder: request.folder,
                    trigger: request.trigger,
                    requires_trigger: request.requires_trigger,
                    container_config: None,
                })
                .await
                .map_err(HostError::from)
        })
        .await
}

//! The [`ChannelHost`] cambot gives its channels: inbound messages are stored and routed, chat
//! metadata stored, registrations validated and persisted.

use std::sync::Arc;

use cambot_channels::BoxFuture;
use cambot_channels::ChannelEvent;
use cambot_channels::ChannelHost;
use cambot_channels::GroupRegistrationRequest;
use cambot_channels::HostError;
use cambot_core::GroupRegistration;
use cambot_protocol::ChatMetadata;
use cambot_protocol::DataLayout;
use cambot_protocol::InboundMessage;
use cambot_protocol::RegisteredGroup;
use cambot_protocol::TenantId;
use tokio::sync::mpsc;

use crate::router::Router;

/// Channel lifecycle notices for the daemon (bounded; a full channel drops the notice).
pub type ChannelEvents = mpsc::Sender<ChannelEvent>;

/// The host side of every channel.
pub struct RouterHost {
    router: Arc<Router>,
    layout: DataLayout,
    events: ChannelEvents,
}

impl RouterHost {
    pub fn new(router: Arc<Router>, layout: DataLayout, events: ChannelEvents) -> Self {
        Self {
            router,
            layout,
            events,
        }
    }
}

fn storage(e: impl std::fmt::Display) -> HostError {
    HostError::Storage(e.to_string())
}

impl ChannelHost for RouterHost {
    fn on_message(&self, message: InboundMessage) -> BoxFuture<'_, Result<(), HostError>> {
        let result = self
            .router
            .store()
            .store_message(&message)
            .map_err(storage)
            .map(|_| {
                if !message.is_bot_message {
                    self.router.route_stored(&message.tenant, &message.chat_jid);
                }
            });
        Box::pin(async move { result })
    }

    fn on_chat_metadata(&self, metadata: ChatMetadata) -> BoxFuture<'_, Result<(), HostError>> {
        let result = self
            .router
            .store()
            .store_chat_metadata(&metadata)
            .map_err(storage);
        Box::pin(async move { result })
    }

    fn registered_groups(
        &self,
        tenant: &TenantId,
    ) -> BoxFuture<'_, Result<Vec<RegisteredGroup>, HostError>> {
        let result = self
            .router
            .store()
            .registered_groups(tenant)
            .map_err(storage);
        Box::pin(async move { result })
    }

    fn register_group(
        &self,
        request: GroupRegistrationRequest,
    ) -> BoxFuture<'_, Result<RegisteredGroup, HostError>> {
        let result = register(&self.router, &self.layout, request);
        Box::pin(async move { result })
    }

    fn on_channel_event(&self, event: ChannelEvent) {
        if self.events.try_send(event).is_err() {
            tracing::debug!("channel event dropped (nobody listening or queue full)");
        }
    }
}

/// Validates and stores a registration and creates the group's folder.
pub fn register(
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
    std::fs::create_dir_all(&dir)
        .map_err(|e| HostError::Storage(format!("creating {}: {e}", dir.display())))?;
    let group = router
        .store()
        .register_group(&GroupRegistration {
            tenant: request.tenant,
            jid: request.jid,
            name: request.name,
            folder: request.folder,
            trigger: request.trigger,
            requires_trigger: request.requires_trigger,
            container_config: None,
        })
        .map_err(storage)?;
    router.cache_group(group.clone());
    Ok(group)
}

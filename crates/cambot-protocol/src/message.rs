//! Chat-side records that channels produce and the store keeps.

use serde::Deserialize;
use serde::Serialize;

use crate::ids::ChatJid;
use crate::ids::GroupFolder;
use crate::ids::TenantId;

/// One inbound chat message as a channel hands it over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMessage {
    pub tenant: TenantId,
    pub chat_jid: ChatJid,
    /// The channel's own message id; `(tenant, chat_jid, id)` is the idempotency key.
    pub id: String,
    pub sender: String,
    pub sender_name: String,
    pub content: String,
    /// RFC 3339.
    pub timestamp: String,
    #[serde(default)]
    pub is_from_me: bool,
    #[serde(default)]
    pub is_bot_message: bool,
}

/// Chat metadata, reported for every chat a channel sees (registered or not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMetadata {
    pub tenant: TenantId,
    pub chat_jid: ChatJid,
    /// RFC 3339 time of the latest activity.
    pub timestamp: String,
    pub name: Option<String>,
    pub channel: Option<String>,
    pub is_group: Option<bool>,
}

/// A chat registered to a group folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredGroup {
    pub tenant: TenantId,
    pub jid: ChatJid,
    pub name: String,
    pub folder: GroupFolder,
    pub trigger: String,
    /// `None` means the default: a trigger is required except in the main group.
    pub requires_trigger: Option<bool>,
    pub added_at: String,
    #[serde(default)]
    pub container_config: Option<ContainerConfig>,
}

impl RegisteredGroup {
    pub fn is_main(&self) -> bool {
        self.folder.is_main()
    }
}

/// Per-group sandbox settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_mounts: Vec<AdditionalMount>,
    /// Hard timeout override, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Memory limit override, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
}

/// A requested extra mount; validated against the allowlist before it reaches any sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdditionalMount {
    pub host_path: String,
    #[serde(default)]
    pub container_path: Option<String>,
    /// Defaults to read-only.
    #[serde(default)]
    pub readonly: Option<bool>,
}

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
    /// Ids of attachments the channel stored first (`ChannelHost::store_attachment`); the
    /// host shows the agent each one's path and sniffed type below the content.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<String>,
}

/// A file a channel received: the bytes as they came, the name and type the sender declared.
/// None of it is trusted: the host sniffs the type, generates the file name and keeps the
/// declared name as metadata only.
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    pub name: String,
    pub declared_type: Option<String>,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("name", &self.name)
            .field("declared_type", &self.declared_type)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// An attachment the host stored in the group's uploads directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAttachment {
    /// Generated; names the upload's directory.
    pub id: String,
    /// The sender's file name, control characters stripped (metadata only).
    pub original_name: String,
    /// The type the sender declared, control characters stripped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_type: Option<String>,
    /// The MIME type the host sniffed from the bytes (`application/octet-stream` when unknown).
    pub sniffed_type: String,
    /// The document kind `read_document` reads it as, when it is one (`pdf`, `docx`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<crate::documents::DocKind>,
    pub size: u64,
    /// Where the group's runs see it (`/workspace/uploads/<id>/file.<ext>`).
    pub sandbox_path: String,
    /// RFC 3339.
    pub stored_at: String,
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

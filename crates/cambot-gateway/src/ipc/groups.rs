//! `register_group` and `list_groups`: a tenant's main group administers the chats of its own
//! tenant and nothing else.
//!
//! What `register_group` refuses (403 unless said otherwise):
//! - a caller that is not its tenant's main group;
//! - a folder the host reserves: `main` in any case (a registered chat never gains admin
//!   power), `global` (400, the tenant's shared memory) and `web-*` (web chat sessions);
//! - a `web:` jid: web sessions are registered by the web channel alone;
//! - a jid another tenant has registered (logged with both tenants);
//! - moving a registered chat to a different folder: that would hand its history, memory and
//!   files to another group, so only the operator does it (`cambot groups register`).
//!   Re-registering into the same folder updates its name and trigger.

use cambot_core::GroupRegistration;
use cambot_protocol::ChatJid;
use cambot_protocol::GroupFolder;
use cambot_protocol::RegisteredGroup;
use cambot_protocol::ipc::GroupSummary;
use cambot_protocol::ipc::ListGroupsResponse;
use cambot_protocol::ipc::RegisterGroupRequest;

use super::HostToolError;
use super::IpcService;
use super::RunIdentity;

/// Folders named `web-...` belong to web chat sessions (`cambot_channels::web::session_folder`).
const WEB_FOLDER_PREFIX: &str = "web-";
/// Jids of web chat sessions (`cambot_channels::web::session_jid`).
const WEB_JID_PREFIX: &str = "web:";

/// Why a folder may not be given to a chat through `register_group`, if it may not.
fn reserved_folder(folder: &GroupFolder) -> Option<&'static str> {
    let name = folder.as_str();
    if name.eq_ignore_ascii_case(GroupFolder::MAIN) {
        Some("it is the tenant's main group; no chat is made main through a host tool")
    } else if name
        .get(..WEB_FOLDER_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(WEB_FOLDER_PREFIX))
    {
        Some("web-* folders belong to web chat sessions")
    } else {
        None
    }
}

impl IpcService {
    /// `register_group`: main only, within its own tenant (rules in the module doc).
    pub async fn register_group(
        &self,
        who: &RunIdentity,
        req: RegisterGroupRequest,
    ) -> Result<RegisteredGroup, HostToolError> {
        if !who.is_main() {
            return Err(HostToolError::Forbidden(
                "only the main group may register groups".into(),
            ));
        }
        for (field, value) in [
            ("jid", &req.jid),
            ("name", &req.name),
            ("folder", &req.folder),
            ("trigger", &req.trigger),
        ] {
            if value.trim().is_empty() {
                return Err(HostToolError::BadRequest(format!("{field} is required")));
            }
        }
        let jid = ChatJid::new(&req.jid)?;
        let folder = GroupFolder::new(&req.folder)?;
        if let Some(why) = reserved_folder(&folder) {
            return Err(HostToolError::Forbidden(format!(
                "folder {folder} is reserved: {why}"
            )));
        }
        if jid.as_str().starts_with(WEB_JID_PREFIX) {
            return Err(HostToolError::Forbidden(format!(
                "{jid} is a web chat session; only the web channel registers those"
            )));
        }
        match self.store.registered_group(&who.tenant, &jid).await? {
            Some(existing) if existing.folder != folder => {
                return Err(HostToolError::Forbidden(format!(
                    "{jid} is registered to folder {}; only the operator moves a chat to another folder (cambot groups register)",
                    existing.folder
                )));
            }
            Some(_) => {}
            None => {
                self.refuse_other_tenants(who, &jid, "register_group")
                    .await?
            }
        }
        let dir = self.layout.group_dir(&who.tenant, &folder);
        if let Err(source) = tokio::fs::create_dir_all(&dir).await {
            return Err(HostToolError::GroupDir { path: dir, source });
        }
        // The check above names the owner for the common case; this one closes the race with
        // another tenant registering the same jid between that read and this write.
        let Some(group) = self
            .store
            .register_group_unclaimed(GroupRegistration {
                tenant: who.tenant.clone(),
                jid: jid.clone(),
                name: req.name,
                folder,
                trigger: req.trigger,
                requires_trigger: req.requires_trigger,
                container_config: None,
            })
            .await?
        else {
            tracing::warn!(
                tenant = %who.tenant,
                chat = %jid,
                "register_group lost a race to another tenant registering the same chat"
            );
            return Err(HostToolError::Forbidden(format!(
                "{jid} belongs to another tenant"
            )));
        };
        (self.on_registered)(group.clone()).await;
        Ok(group)
    }

    /// `list_groups`: main only; the group chats of its own tenant, newest activity first.
    pub async fn list_groups(
        &self,
        who: &RunIdentity,
    ) -> Result<ListGroupsResponse, HostToolError> {
        if !who.is_main() {
            return Err(HostToolError::Forbidden(
                "only the main group may list groups".into(),
            ));
        }
        let groups = self.store.available_groups(&who.tenant).await?;
        Ok(ListGroupsResponse {
            groups: groups
                .into_iter()
                .map(|g| GroupSummary {
                    jid: g.jid,
                    name: g.name,
                    last_activity: g.last_activity,
                    is_registered: g.is_registered,
                    folder: g.folder,
                })
                .collect(),
        })
    }
}

//! Registered chats kept in memory for the router's hot path: by chat (routing a stored
//! message) and by group folder (choosing the next batch of a group's queue), so neither asks
//! the database for registrations that change only on (re-)registration.

use std::collections::BTreeSet;
use std::collections::HashMap;
use std::sync::Arc;

use cambot_protocol::ChatJid;
use cambot_protocol::GroupKey;
use cambot_protocol::RegisteredGroup;
use cambot_protocol::TenantId;

#[derive(Debug, Default)]
pub(crate) struct GroupCache {
    /// Nested rather than keyed by a (tenant, jid) pair, and shared: routing a message looks
    /// its chat up without building a key or copying the registration.
    by_chat: HashMap<TenantId, HashMap<ChatJid, Arc<RegisteredGroup>>>,
    /// The chats registered into each folder, in jid order (the order the store lists them).
    by_folder: HashMap<GroupKey, BTreeSet<ChatJid>>,
}

impl GroupCache {
    pub(crate) fn from_groups(groups: impl IntoIterator<Item = RegisteredGroup>) -> Self {
        let mut cache = Self::default();
        for g in groups {
            cache.insert(g);
        }
        cache
    }

    /// Adds or replaces a chat's registration (a re-registration may move it to another folder).
    pub(crate) fn insert(&mut self, group: RegisteredGroup) {
        if let Some(old) = self.chat(&group.tenant, &group.jid)
            && old.folder != group.folder
        {
            let old_key = GroupKey::new(old.tenant.clone(), old.folder.clone());
            if let Some(jids) = self.by_folder.get_mut(&old_key) {
                jids.remove(&group.jid);
                if jids.is_empty() {
                    self.by_folder.remove(&old_key);
                }
            }
        }
        self.by_folder
            .entry(GroupKey::new(group.tenant.clone(), group.folder.clone()))
            .or_default()
            .insert(group.jid.clone());
        self.by_chat
            .entry(group.tenant.clone())
            .or_default()
            .insert(group.jid.clone(), Arc::new(group));
    }

    pub(crate) fn chat(&self, tenant: &TenantId, jid: &ChatJid) -> Option<&Arc<RegisteredGroup>> {
        self.by_chat.get(tenant)?.get(jid)
    }

    /// Every chat registered into a group folder, in jid order.
    pub(crate) fn in_folder(&self, key: &GroupKey) -> Vec<Arc<RegisteredGroup>> {
        self.by_folder
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|jid| self.chat(&key.tenant, jid).cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use cambot_protocol::GroupFolder;

    use super::*;

    fn group(jid: &str, folder: &str) -> RegisteredGroup {
        RegisteredGroup {
            tenant: TenantId::default_tenant(),
            jid: ChatJid::new(jid).unwrap(),
            name: jid.to_owned(),
            folder: GroupFolder::new(folder).unwrap(),
            trigger: "@Andy".into(),
            added_at: "2026-01-01T00:00:00.000Z".into(),
            container_config: None,
            requires_trigger: None,
        }
    }

    fn key(folder: &str) -> GroupKey {
        GroupKey::new(
            TenantId::default_tenant(),
            GroupFolder::new(folder).unwrap(),
        )
    }

    fn jids(groups: &[Arc<RegisteredGroup>]) -> Vec<&str> {
        groups.iter().map(|g| g.jid.as_str()).collect()
    }

    #[test]
    fn chats_of_a_folder_come_back_in_jid_order() {
        let cache = GroupCache::from_groups([
            group("b@g.us", "shared"),
            group("a@g.us", "shared"),
            group("c@g.us", "other"),
        ]);
        assert_eq!(jids(&cache.in_folder(&key("shared"))), ["a@g.us", "b@g.us"]);
        assert_eq!(jids(&cache.in_folder(&key("other"))), ["c@g.us"]);
        assert!(cache.in_folder(&key("none")).is_empty());
    }

    #[test]
    fn re_registering_into_another_folder_moves_the_chat() {
        let mut cache = GroupCache::from_groups([group("a@g.us", "one"), group("b@g.us", "one")]);
        cache.insert(group("a@g.us", "two"));
        assert_eq!(jids(&cache.in_folder(&key("one"))), ["b@g.us"]);
        assert_eq!(jids(&cache.in_folder(&key("two"))), ["a@g.us"]);
        let tenant = TenantId::default_tenant();
        let jid = ChatJid::new("a@g.us").unwrap();
        assert_eq!(cache.chat(&tenant, &jid).unwrap().folder.as_str(), "two");
    }
}

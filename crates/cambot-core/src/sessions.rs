//! Agent sessions: which transcript a group resumes.

use cambot_protocol::GroupFolder;
use cambot_protocol::TenantId;
use rusqlite::OptionalExtension;
use rusqlite::params;

use crate::batch::WriteOp;
use crate::db::Store;
use crate::error::Result;

impl Store {
    /// The session a group's next run resumes, if any.
    pub fn session(&self, tenant: &TenantId, folder: &GroupFolder) -> Result<Option<String>> {
        let conn = self.reader()?;
        Ok(conn
            .prepare_cached(
                "SELECT session_id FROM sessions WHERE tenant = ?1 AND group_folder = ?2",
            )?
            .query_row(params![tenant.as_str(), folder.as_str()], |r| r.get(0))
            .optional()?)
    }

    /// Records the session a group's runs continue.
    pub fn set_session(
        &self,
        tenant: &TenantId,
        folder: &GroupFolder,
        session_id: &str,
    ) -> Result<()> {
        self.writer()
            .submit_blocking(set_session_op(tenant, folder, session_id))?;
        Ok(())
    }

    /// [`Store::set_session`] for async callers (the router, as a run reports its session).
    pub async fn set_session_async(
        &self,
        tenant: &TenantId,
        folder: &GroupFolder,
        session_id: &str,
    ) -> Result<()> {
        self.writer()
            .submit(set_session_op(tenant, folder, session_id))
            .await?;
        Ok(())
    }

    /// Forgets a group's session: its next run starts a fresh transcript.
    pub fn clear_session(&self, tenant: &TenantId, folder: &GroupFolder) -> Result<()> {
        let conn = self.conn()?;
        conn.execute(
            "DELETE FROM sessions WHERE tenant = ?1 AND group_folder = ?2",
            params![tenant.as_str(), folder.as_str()],
        )?;
        Ok(())
    }
}

fn set_session_op(tenant: &TenantId, folder: &GroupFolder, session_id: &str) -> WriteOp {
    WriteOp::SetSession {
        tenant: tenant.clone(),
        folder: folder.clone(),
        session_id: session_id.to_owned(),
    }
}

pub(crate) fn upsert_session(
    conn: &rusqlite::Connection,
    tenant: &TenantId,
    folder: &GroupFolder,
    session_id: &str,
    now: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO sessions (tenant, group_folder, session_id, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (tenant, group_folder) DO UPDATE SET session_id = excluded.session_id,
             updated_at = excluded.updated_at",
    )?
    .execute(params![tenant.as_str(), folder.as_str(), session_id, now])?;
    Ok(())
}

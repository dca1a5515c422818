//! Upgrades from versions that acknowledged messages from an ingest journal beside the
//! database (`<db>-ingest-a`, `<db>-ingest-b`) before moving them into SQLite.
//!
//! At open, each segment that exists is read, its records are written into `messages` under the
//! seq they were acknowledged with (a record already moved is rewritten in place), the import is
//! made durable, and the file is renamed `<segment>.imported`, so it is read once. A file whose
//! header is not a journal's is left alone and the open fails: nothing acknowledged is dropped
//! because a format is unknown.
//!
//! Segment format: a 16-byte header (magic, then a little-endian generation number) and records:
//!
//! ```text
//! u32 payload length | u32 CRC-32 of the payload | payload
//! payload: i64 seq | u8 flags (1 = from me, 2 = bot) | 7 × (u32 length | UTF-8 bytes):
//!          tenant, chat, id, sender, sender name, content, timestamp
//! ```
//!
//! Reading stops at the first record whose length or CRC is wrong: a torn tail (the old process
//! was killed in the middle of a `write()`), after which nothing was acknowledged.

use std::fs::File;
use std::path::Path;
use std::path::PathBuf;

use cambot_protocol::ChatJid;
use cambot_protocol::InboundMessage;
use cambot_protocol::TenantId;
use rusqlite::Connection;

use crate::error::Result;
use crate::error::StoreError;

const MAGIC: &[u8; 8] = b"CAMBOTJ1";
pub(crate) const HEADER_LEN: u64 = 16;
/// A record larger than this is not a record but garbage (a message is capped far below it).
const MAX_RECORD: u32 = 64 << 20;

/// A journaled message: the seq it was acknowledged with, and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) seq: i64,
    pub(crate) msg: InboundMessage,
}

/// The two segment paths of the database at `db`.
pub(crate) fn segment_paths(db: &Path) -> [PathBuf; 2] {
    ["-ingest-a", "-ingest-b"].map(|suffix| {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    })
}

#[cfg(test)]
pub(crate) fn header(generation: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&generation.to_le_bytes());
    h
}

#[cfg(test)]
fn put_str(buf: &mut Vec<u8>, s: &str) {
    // Strings longer than 4 GiB cannot reach here: messages are capped long before.
    buf.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
/// Appends the record of `msg` stored as `seq` to `buf`.
pub(crate) fn encode(buf: &mut Vec<u8>, seq: i64, msg: &InboundMessage) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 8]);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.push(u8::from(msg.is_from_me) | (u8::from(msg.is_bot_message) << 1));
    for s in [
        msg.tenant.as_str(),
        msg.chat_jid.as_str(),
        &msg.id,
        &msg.sender,
        &msg.sender_name,
        &msg.content,
        &msg.timestamp,
    ] {
        put_str(buf, s);
    }
    let payload = &buf[start + 8..];
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(payload);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Reads a little-endian u32 at `*at`, advancing it.
fn take_u32(bytes: &[u8], at: &mut usize) -> Option<u32> {
    let end = at.checked_add(4)?;
    let v = u32::from_le_bytes(bytes.get(*at..end)?.try_into().ok()?);
    *at = end;
    Some(v)
}

fn take_str<'a>(bytes: &'a [u8], at: &mut usize) -> Option<&'a str> {
    let len = usize::try_from(take_u32(bytes, at)?).ok()?;
    let end = at.checked_add(len)?;
    let s = std::str::from_utf8(bytes.get(*at..end)?).ok()?;
    *at = end;
    Some(s)
}

/// Decodes one payload whose CRC matched. `Err` names what is wrong with it.
fn decode_payload(payload: &[u8]) -> std::result::Result<Record, String> {
    let seq = i64::from_le_bytes(
        payload
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .ok_or("short payload")?,
    );
    let flags = *payload.get(8).ok_or("short payload")?;
    let mut at = 9;
    let mut fields = [""; 7];
    for f in &mut fields {
        *f = take_str(payload, &mut at).ok_or("truncated field")?;
    }
    if at != payload.len() {
        return Err("trailing bytes".into());
    }
    let [tenant, chat, id, sender, sender_name, content, timestamp] = fields;
    Ok(Record {
        seq,
        msg: InboundMessage {
            tenant: TenantId::new(tenant).map_err(|e| format!("tenant: {e}"))?,
            chat_jid: ChatJid::new(chat).map_err(|e| format!("chat: {e}"))?,
            id: id.to_owned(),
            sender: sender.to_owned(),
            sender_name: sender_name.to_owned(),
            content: content.to_owned(),
            timestamp: timestamp.to_owned(),
            is_from_me: flags & 1 != 0,
            is_bot_message: flags & 2 != 0,
            attachments: Vec::new(),
        },
    })
}

/// What one segment file holds.
#[derive(Debug, Default)]
pub(crate) struct Segment {
    pub(crate) records: Vec<Record>,
    /// Why reading stopped before the end of the file, if it did.
    pub(crate) torn: Option<String>,
    /// The file does not start with a journal header: not ours, or a format this build does not
    /// know.
    pub(crate) foreign: bool,
}

/// Decodes a segment's bytes, stopping at a torn tail.
pub(crate) fn decode_segment(bytes: &[u8]) -> Segment {
    let mut seg = Segment::default();
    if bytes.is_empty() {
        return seg;
    }
    if bytes.len() < HEADER_LEN as usize || &bytes[..8] != MAGIC {
        seg.torn = Some("no valid header".into());
        seg.foreign = true;
        return seg;
    }
    let mut at = HEADER_LEN as usize;
    while at < bytes.len() {
        let record_start = at;
        let torn = |why: String| Some(format!("at byte {record_start}: {why}"));
        let (Some(len), Some(crc)) = (take_u32(bytes, &mut at), take_u32(bytes, &mut at)) else {
            seg.torn = torn("incomplete record header".into());
            break;
        };
        if len > MAX_RECORD {
            seg.torn = torn(format!("record length {len} is not plausible"));
            break;
        }
        let Some(payload) = at
            .checked_add(len as usize)
            .and_then(|end| bytes.get(at..end))
        else {
            seg.torn = torn("incomplete record".into());
            break;
        };
        if crc32fast::hash(payload) != crc {
            seg.torn = torn("CRC mismatch".into());
            break;
        }
        match decode_payload(payload) {
            Ok(record) => seg.records.push(record),
            Err(why) => {
                seg.torn = torn(why);
                break;
            }
        }
        at += len as usize;
    }
    seg
}

/// Reads the segment at `path` (a missing file is empty).
pub(crate) fn read_segment(path: &Path) -> Result<Segment> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(decode_segment(&bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Segment::default()),
        Err(e) => Err(io_error("reading", path, e)),
    }
}

fn io_error(what: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::LegacyJournal {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Imports what an older version's ingest journal beside `db` holds (see the module docs).
/// Returns how many records were imported; 0 when there is no journal.
pub(crate) fn import(conn: &mut Connection, db: &Path) -> Result<usize> {
    let (mut imported, mut found) = (0, false);
    for path in segment_paths(db) {
        if !path.exists() {
            continue;
        }
        found = true;
        let segment = read_segment(&path)?;
        if segment.foreign && std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0) > 0 {
            return Err(StoreError::UnknownJournal { path });
        }
        if let Some(why) = &segment.torn
            && !segment.foreign
        {
            tracing::warn!(journal = %path.display(), why = %why, kept = segment.records.len(),
                "the old ingest journal ends in a torn record (a crash during a write); importing \
                 the records before it");
        }
        if !segment.records.is_empty() {
            write_records(conn, &segment.records)?;
        }
        std::fs::rename(&path, renamed(&path)).map_err(|e| io_error("renaming", &path, e))?;
        tracing::info!(journal = %path.display(), records = segment.records.len(),
            "imported an ingest journal left by an older cambot; renamed it *.imported");
        imported += segment.records.len();
    }
    if found {
        sync_dir(db)?;
    }
    let mut lock = db.as_os_str().to_owned();
    lock.push("-ingest.lock");
    // The old versions' lock file: empty, only ever flock()ed.
    let _ = std::fs::remove_file(PathBuf::from(lock));
    Ok(imported)
}

fn renamed(path: &Path) -> PathBuf {
    let mut done = path.as_os_str().to_owned();
    done.push(".imported");
    PathBuf::from(done)
}

/// Writes the records in one transaction that is on disk when this returns (the journal file is
/// renamed right after: the import must not live only in the page cache).
fn write_records(conn: &mut Connection, records: &[Record]) -> Result<()> {
    conn.pragma_update(None, "synchronous", "FULL")?;
    let outcome = (|| -> Result<()> {
        let tx = conn.transaction()?;
        let mut top = 0;
        for Record { seq, msg } in records {
            super::messages::ensure_chat(&tx, msg)?;
            // A record already moved by the old version is rewritten in place; a row with the
            // same id under another seq is left alone (the old version's dedupe ruled it out).
            tx.prepare_cached(
                "INSERT INTO messages (seq, tenant, chat_jid, id, sender, sender_name, content,
                                       timestamp, is_from_me, is_bot_message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (tenant, chat_jid, seq) DO UPDATE SET sender = excluded.sender,
                     sender_name = excluded.sender_name, content = excluded.content,
                     timestamp = excluded.timestamp, is_from_me = excluded.is_from_me,
                     is_bot_message = excluded.is_bot_message
                 ON CONFLICT DO NOTHING",
            )?
            .execute(rusqlite::params![
                seq,
                msg.tenant.as_str(),
                msg.chat_jid.as_str(),
                msg.id,
                msg.sender,
                msg.sender_name,
                msg.content,
                msg.timestamp,
                msg.is_from_me,
                msg.is_bot_message
            ])?;
            top = top.max(*seq);
        }
        tx.execute("UPDATE message_seq SET last = MAX(last, ?1)", [top])?;
        tx.commit()?;
        Ok(())
    })();
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    outcome
}

fn sync_dir(db: &Path) -> Result<()> {
    let dir = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error("syncing the directory of", db, e))
}

#[cfg(test)]
#[path = "legacy_journal_tests.rs"]
mod tests;

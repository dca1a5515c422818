//! The ingest journal's files: where a message is acknowledged before SQLite has it.
//!
//! Two segment files beside the database (`<db>-ingest-a`, `<db>-ingest-b`). Each starts with
//! a 16-byte header (magic, then a little-endian generation number that grows by one at every
//! switch) and holds records:
//!
//! ```text
//! u32 payload length | u32 CRC-32 of the payload | payload
//! payload: i64 seq | u8 flags (1 = from me, 2 = bot) | 7 × (u32 length | UTF-8 bytes):
//!          tenant, chat, id, sender, sender name, content, timestamp
//! ```
//!
//! All integers are little-endian. A record is written with one `write()` per batch and no
//! fsync: like a WAL commit under `synchronous = NORMAL`, it survives the process being killed,
//! and an OS crash may lose the last milliseconds. Reading stops at the first record whose
//! length or CRC is wrong: that is a torn tail (a crash in the middle of a `write()`), and
//! everything before it is intact.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

use cambot_protocol::ChatJid;
use cambot_protocol::InboundMessage;
use cambot_protocol::TenantId;

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

/// The lock file whose exclusive `flock` makes a process the journal's owner.
pub(crate) fn lock_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-ingest.lock");
    PathBuf::from(p)
}

pub(crate) fn header(generation: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..].copy_from_slice(&generation.to_le_bytes());
    h
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    // Strings longer than 4 GiB cannot reach here: messages are capped long before.
    buf.extend_from_slice(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

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
        },
    })
}

/// What one segment file holds.
#[derive(Debug, Default)]
pub(crate) struct Segment {
    /// 0 for an empty (or headerless) file.
    pub(crate) generation: u64,
    pub(crate) records: Vec<Record>,
    /// Bytes up to the end of the last good record; what follows is a torn tail.
    pub(crate) valid_len: u64,
    /// Why reading stopped before the end of the file, if it did.
    pub(crate) torn: Option<String>,
}

/// Decodes a segment's bytes, stopping at a torn tail.
pub(crate) fn decode_segment(bytes: &[u8]) -> Segment {
    let mut seg = Segment::default();
    if bytes.is_empty() {
        return seg;
    }
    if bytes.len() < HEADER_LEN as usize || &bytes[..8] != MAGIC {
        seg.torn = Some("no valid header".into());
        return seg;
    }
    let mut generation = [0u8; 8];
    generation.copy_from_slice(&bytes[8..16]);
    seg.generation = u64::from_le_bytes(generation);
    let mut at = HEADER_LEN as usize;
    seg.valid_len = HEADER_LEN;
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
        seg.valid_len = at as u64;
    }
    seg
}

/// Reads the segment at `path` (a missing file is empty).
pub(crate) fn read_segment(path: &Path) -> Result<Segment> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(decode_segment(&bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Segment::default()),
        Err(e) => Err(io_error("reading the ingest journal", path, &e)),
    }
}

pub(crate) fn io_error(what: &str, path: &Path, e: &std::io::Error) -> StoreError {
    StoreError::Journal(format!("{what} {}: {e}", path.display()))
}

/// Opens a segment for appending, creating it.
pub(crate) fn open_segment(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
        .map_err(|e| io_error("opening the ingest journal", path, &e))
}

/// Empties a segment and writes a fresh header into it.
pub(crate) fn start_segment(file: &mut File, path: &Path, generation: u64) -> Result<()> {
    file.set_len(0)
        .and_then(|()| file.write_all(&header(generation)))
        .map_err(|e| io_error("starting the ingest journal", path, &e))
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;

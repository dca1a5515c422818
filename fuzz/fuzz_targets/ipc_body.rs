//! The host socket's IPC bodies: the gateway's decoding of every `/v1/ipc/*` request body
//! (`cambot_gateway::parse_ipc_body`, with the id and schedule checks the routes apply next)
//! and the runner's decoding of every answer (`serde_json` into the `cambot_protocol::ipc`
//! response types, as `cambot-runner`'s host client does).
//!
//! Properties: an empty body means `{}`; whatever decodes re-encodes and decodes to the same
//! value; a name the id checks accept is path-safe.

#![no_main]

use std::fmt::Debug;

use cambot_gateway::parse_ipc_body;
use cambot_protocol::ChatJid;
use cambot_protocol::GroupFolder;
use cambot_protocol::TaskId;
use cambot_protocol::ipc;
use cambot_scheduler::cron::Schedule;
use chrono::TimeZone;
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fuzz_target!(|data: &[u8]| {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    match route % 12 {
        0 => {
            if let Some(r) = request::<ipc::SendMessageRequest>(body)
                && let Some(jid) = &r.chat_jid
            {
                check_jid(jid);
            }
        }
        1 => {
            if let Some(r) = request::<ipc::ScheduleTaskRequest>(body) {
                if let Some(jid) = &r.target_group_jid {
                    check_jid(jid);
                }
                let now = chrono::Utc.timestamp_opt(1_767_225_600, 0).unwrap();
                let _ = Schedule::parse(&r.schedule_type, &r.schedule_value, chrono_tz::UTC, now);
            }
        }
        2 => {
            if let Some(r) = request::<ipc::TaskIdRequest>(body)
                && let Ok(id) = TaskId::new(&r.task_id)
            {
                assert!(!id.as_str().is_empty() && id.as_str().len() <= 128);
                assert!(!id.as_str().contains('/'));
            }
        }
        3 => {
            if let Some(r) = request::<ipc::RegisterGroupRequest>(body) {
                check_jid(&r.jid);
                if let Ok(folder) = GroupFolder::new(&r.folder) {
                    let f = folder.as_str();
                    assert!(!f.contains(['/', '\\', '.', ':']) && !f.is_empty() && f.len() <= 64);
                    assert!(!f.eq_ignore_ascii_case(GroupFolder::RESERVED));
                }
            }
        }
        4 => {
            request::<ipc::FetchRequest>(body);
        }
        5 => answer::<ipc::ScheduleTaskResponse>(body),
        6 => answer::<ipc::ListTasksResponse>(body),
        7 => answer::<ipc::ListGroupsResponse>(body),
        8 => answer::<ipc::FetchResponse>(body),
        9 => answer::<ipc::IpcError>(body),
        10 => answer::<ipc::Ok>(body),
        // The send_message and task-action answers are read as any JSON and dropped (a float's
        // round trip is serde_json's own best-effort precision, so none is asserted here).
        _ => {
            let _ = serde_json::from_slice::<serde_json::Value>(body);
        }
    }
});

/// The gateway's decode of a request body, checked for the empty-body rule and a round trip.
fn request<T>(body: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let decoded = parse_ipc_body::<T>(body);
    if body.is_empty() {
        assert_eq!(decoded.is_ok(), parse_ipc_body::<T>(b"{}").is_ok());
    }
    let value = decoded.ok()?;
    let encoded = serde_json::to_vec(&value).expect("a decoded request encodes");
    let back = parse_ipc_body::<T>(&encoded).expect("a re-encoded request decodes");
    assert_eq!(back, value);
    Some(value)
}

/// The runner's decode of an answer, checked for a round trip.
fn answer<T>(body: &[u8])
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    if let Ok(value) = serde_json::from_slice::<T>(body) {
        let encoded = serde_json::to_vec(&value).expect("a decoded answer encodes");
        let back: T = serde_json::from_slice(&encoded).expect("a re-encoded answer decodes");
        assert_eq!(back, value);
    }
}

fn check_jid(jid: &str) {
    if let Ok(j) = ChatJid::new(jid) {
        assert!(!j.as_str().is_empty() && j.as_str().len() <= ChatJid::MAX_LEN);
        assert!(!j.as_str().chars().any(char::is_control));
    }
}

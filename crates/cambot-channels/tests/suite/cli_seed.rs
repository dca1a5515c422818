//! The seed's channels/cli.test.ts cases, against in-memory pipes.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use cambot_channels::BoxFuture;
use cambot_channels::Channel;
use cambot_channels::ChannelEvent;
use cambot_channels::ChannelHost;
use cambot_channels::ChannelOpts;
use cambot_channels::GroupRegistrationRequest;
use cambot_channels::HostError;
use cambot_channels::Outbound;
use cambot_channels::cli::CliChannel;
use cambot_protocol::ChatJid;
use cambot_protocol::ChatMetadata;
use cambot_protocol::InboundMessage;
use cambot_protocol::RegisteredGroup;
use cambot_protocol::TenantId;
use pretty_assertions::assert_eq;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::io::DuplexStream;

#[derive(Default)]
struct Recorded {
    messages: Vec<InboundMessage>,
    metadata: Vec<ChatMetadata>,
    registrations: Vec<GroupRegistrationRequest>,
    events: Vec<ChannelEvent>,
}

#[derive(Default)]
struct RecordingHost(Mutex<Recorded>);

impl ChannelHost for RecordingHost {
    fn on_message(&self, message: InboundMessage) -> BoxFuture<'_, Result<(), HostError>> {
        self.0.lock().unwrap().messages.push(message);
        Box::pin(async { Ok(()) })
    }
    fn on_chat_metadata(&self, metadata: ChatMetadata) -> BoxFuture<'_, Result<(), HostError>> {
        self.0.lock().unwrap().metadata.push(metadata);
        Box::pin(async { Ok(()) })
    }
    fn registered_groups(
        &self,
        _t: &TenantId,
    ) -> BoxFuture<'_, Result<Vec<RegisteredGroup>, HostError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn register_group(
        &self,
        request: GroupRegistrationRequest,
    ) -> BoxFuture<'_, Result<RegisteredGroup, HostError>> {
        self.0.lock().unwrap().registrations.push(request.clone());
        Box::pin(async move {
            Ok(RegisteredGroup {
                tenant: request.tenant,
                jid: request.jid,
                name: request.name,
                folder: request.folder,
                trigger: request.trigger,
                requires_trigger: request.requires_trigger,
                added_at: "now".into(),
                container_config: None,
            })
        })
    }
    fn on_channel_event(&self, event: ChannelEvent) {
        self.0.lock().unwrap().events.push(event);
    }
}

struct Harness {
    host: Arc<RecordingHost>,
    channel: CliChannel,
    input: DuplexStream,
    output: DuplexStream,
}

fn harness() -> Harness {
    let host = Arc::new(RecordingHost::default());
    let (input, reader) = tokio::io::duplex(4096);
    let (writer, output) = tokio::io::duplex(4096);
    let channel = CliChannel::with_io(
        ChannelOpts {
            host: host.clone(),
            assistant_name: "Andy".into(),
        },
        TenantId::default_tenant(),
        Box::new(tokio::io::BufReader::new(reader)),
        Box::new(writer),
    )
    .unwrap();
    Harness {
        host,
        channel,
        input,
        output,
    }
}

async fn read_available(output: &mut DuplexStream, want: &str) -> String {
    let mut seen = String::new();
    let mut buf = [0u8; 1024];
    while !seen.contains(want) {
        let n = tokio::time::timeout(Duration::from_secs(5), output.read(&mut buf))
            .await
            .expect("output in time")
            .unwrap();
        assert!(n > 0, "output closed before {want:?}; saw {seen:?}");
        seen.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    seen
}

async fn wait_for(host: &RecordingHost, pred: impl Fn(&Recorded) -> bool) {
    for _ in 0..500 {
        if pred(&host.0.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached");
}

#[tokio::test]
async fn name_and_jid_ownership() {
    let h = harness();
    assert_eq!(h.channel.name(), "cli");
    let t = TenantId::default_tenant();
    assert!(
        h.channel
            .owns_jid(&t, &ChatJid::new("cli:console").unwrap())
    );
    assert!(h.channel.owns_jid(&t, &ChatJid::new("cli:other").unwrap()));
    assert!(!h.channel.owns_jid(&t, &ChatJid::new("123@g.us").unwrap()));
    assert!(
        !h.channel
            .owns_jid(&t, &ChatJid::new("123@s.whatsapp.net").unwrap())
    );
    assert!(!h.channel.owns_jid(&t, &ChatJid::new("tg:123").unwrap()));
    // The terminal speaks for one tenant: another tenant's `cli:console` is not its chat.
    let beta = TenantId::new("beta").unwrap();
    assert!(
        !h.channel
            .owns_jid(&beta, &ChatJid::new("cli:console").unwrap())
    );
}

#[tokio::test]
async fn connect_registers_main_without_trigger_and_shows_the_prompt() {
    let mut h = harness();
    assert!(!h.channel.is_connected());
    h.channel.connect().await.unwrap();
    assert!(h.channel.is_connected());
    let regs = h.host.0.lock().unwrap().registrations.clone();
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].jid.as_str(), "cli:console");
    assert!(regs[0].folder.is_main());
    assert_eq!(regs[0].requires_trigger, Some(false));
    assert_eq!(regs[0].trigger, "@Andy");
    assert_eq!(read_available(&mut h.output, "Andy> ").await, "Andy> ");
}

#[tokio::test]
async fn a_line_becomes_metadata_and_a_message_and_blank_lines_are_ignored() {
    let mut h = harness();
    h.channel.connect().await.unwrap();
    h.input
        .write_all(b"   \n\n\t\nhello there  \n")
        .await
        .unwrap();
    wait_for(&h.host, |r| !r.messages.is_empty()).await;
    let rec = h.host.0.lock().unwrap();
    assert_eq!(rec.messages.len(), 1, "blank lines produce nothing");
    let m = &rec.messages[0];
    assert_eq!(m.content, "hello there");
    assert_eq!(m.chat_jid.as_str(), "cli:console");
    assert_eq!(m.sender, "cli:user");
    assert_eq!(m.sender_name, "User");
    assert!(m.id.starts_with("cli-"));
    assert_eq!(rec.metadata.len(), 1);
    assert_eq!(rec.metadata[0].name.as_deref(), Some("CLI"));
    assert_eq!(rec.metadata[0].channel.as_deref(), Some("cli"));
    assert_eq!(rec.metadata[0].is_group, Some(false));
}

#[tokio::test]
async fn two_lines_in_one_millisecond_get_distinct_ids() {
    let h = harness();
    h.channel.connect().await.unwrap();
    let mut input = h.input;
    input.write_all(b"one\ntwo\nthree\n").await.unwrap();
    wait_for(&h.host, |r| r.messages.len() == 3).await;
    let rec = h.host.0.lock().unwrap();
    let mut ids: Vec<_> = rec.messages.iter().map(|m| m.id.clone()).collect();
    ids.dedup();
    assert_eq!(ids.len(), 3);
}

#[tokio::test]
async fn send_prints_the_assistant_prefix() {
    let mut h = harness();
    h.channel.connect().await.unwrap();
    read_available(&mut h.output, "Andy> ").await;
    let jid = ChatJid::new("cli:console").unwrap();
    h.channel
        .send_message(Outbound {
            delivery_id: 1,
            tenant: &TenantId::default_tenant(),
            chat_jid: &jid,
            text: "Hello user!",
        })
        .await
        .unwrap();
    let out = read_available(&mut h.output, "Andy> ").await;
    assert_eq!(out, "Andy: Hello user!\nAndy> ");
    // A reply committed for another tenant's `cli:console` is refused, never printed.
    let err = h
        .channel
        .send_message(Outbound {
            delivery_id: 2,
            tenant: &TenantId::new("beta").unwrap(),
            chat_jid: &jid,
            text: "for beta",
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("tenant beta"), "{err}");
    h.channel
        .send_message(Outbound {
            delivery_id: 3,
            tenant: &TenantId::default_tenant(),
            chat_jid: &jid,
            text: "next",
        })
        .await
        .unwrap();
    let out = read_available(&mut h.output, "Andy> ").await;
    assert_eq!(
        out, "Andy: next\nAndy> ",
        "nothing of beta's reply was printed"
    );
}

#[tokio::test]
async fn disconnect_sets_not_connected_and_stops_reading() {
    let mut h = harness();
    h.channel.connect().await.unwrap();
    h.channel.disconnect().await.unwrap();
    assert!(!h.channel.is_connected());
    // The reader is dropped: writes to the input now fail or go nowhere, and nothing is stored.
    let _ = h.input.write_all(b"after disconnect\n").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(h.host.0.lock().unwrap().messages.is_empty());
    let jid = ChatJid::new("cli:console").unwrap();
    let err = h
        .channel
        .send_message(Outbound {
            delivery_id: 1,
            tenant: &TenantId::default_tenant(),
            chat_jid: &jid,
            text: "x",
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not connected"));
    let _ = &mut h.output;
}

#[tokio::test]
async fn end_of_input_is_reported_and_output_keeps_working() {
    let mut h = harness();
    h.channel.connect().await.unwrap();
    h.input.write_all(b"last words\n").await.unwrap();
    drop(h.input);
    wait_for(&h.host, |r| !r.events.is_empty()).await;
    assert_eq!(
        h.host.0.lock().unwrap().events,
        vec![ChannelEvent::InputClosed {
            channel: "cli".into()
        }]
    );
    let jid = ChatJid::new("cli:console").unwrap();
    h.channel
        .send_message(Outbound {
            delivery_id: 2,
            tenant: &TenantId::default_tenant(),
            chat_jid: &jid,
            text: "still here",
        })
        .await
        .unwrap();
    assert!(
        read_available(&mut h.output, "still here")
            .await
            .contains("Andy: still here")
    );
}

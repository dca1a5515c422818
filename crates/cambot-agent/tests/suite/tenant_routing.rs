//! Replies carry their tenant to the channel: two tenants each have a chat `fake:room`, each
//! served by a channel bound to its own tenant, and nothing committed for one ever reaches the
//! other's chat (a real daemon, real SQLite, fake channels).

use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use cambot_agent::daemon::ChannelFactory;
use cambot_agent::daemon::Daemon;
use cambot_channels::Channel;
use cambot_core::NewReply;
use cambot_protocol::ChatJid;
use cambot_protocol::TenantId;
use cambot_testkit::fake_channel::FakeChannel;
use cambot_testkit::fake_runner::ScriptedRunner;
use cambot_testkit::fake_runner::Turn;
use pretty_assertions::assert_eq;

use super::support::*;

const WAIT: Duration = Duration::from_secs(10);
const ROOM: &str = "fake:room";

fn acme() -> TenantId {
    TenantId::new("acme").unwrap()
}

fn beta() -> TenantId {
    TenantId::new("beta").unwrap()
}

type Slot = Arc<Mutex<Vec<Arc<FakeChannel>>>>;

/// One fake channel per tenant given, each owning `fake:` jids of its tenant only.
fn per_tenant_channels(tenants: Vec<TenantId>, slot: Slot) -> ChannelFactory {
    Box::new(move |opts| {
        Box::pin(async move {
            let mut out: Vec<Arc<dyn Channel>> = Vec::new();
            for t in tenants {
                let channel = FakeChannel::for_tenant(opts.clone(), "fake:", t);
                channel.connect().await?;
                slot.lock().unwrap().push(Arc::clone(&channel));
                out.push(channel);
            }
            Ok(out)
        })
    })
}

/// A daemon whose channels serve `tenants`, with `fake:room` registered (no trigger needed) in
/// both acme and beta, to a folder of the same name.
async fn two_tenants(tenants: Vec<TenantId>) -> (Daemon, Vec<Arc<FakeChannel>>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    // Runs close soon after answering, so `wait_idle` returns.
    let cfg = config(dir.path(), "[router]\nidle_timeout_ms = 50\n");
    let runner = ScriptedRunner::new(|req, _| {
        Turn::reply(format!("for {} {}", req.group.tenant, req.chat_jid))
    });
    let slot: Slot = Arc::default();
    let daemon = Daemon::start(
        &cfg,
        runner,
        per_tenant_channels(tenants, Arc::clone(&slot)),
    )
    .await
    .unwrap();
    let channels = slot.lock().unwrap().clone();
    for t in [acme(), beta()] {
        channels[0]
            .register(&t, ROOM, "team", Some(false))
            .await
            .unwrap();
    }
    (daemon, channels, dir)
}

async fn commit(daemon: &Daemon, tenant: TenantId, text: &str) -> i64 {
    let id = daemon
        .router()
        .store()
        .commit_reply(NewReply {
            tenant,
            chat_jid: ChatJid::new(ROOM).unwrap(),
            text: text.to_owned(),
            origin: "ipc".to_owned(),
            advance_to: None,
        })
        .await
        .unwrap();
    daemon.outbox().kick();
    id
}

/// `(tenant, jid, text)` of what a channel delivered.
fn delivered(channel: &FakeChannel) -> Vec<(String, String, String)> {
    channel
        .sent()
        .into_iter()
        .map(|d| (d.tenant, d.chat_jid, d.text))
        .collect()
}

fn row(tenant: &str, text: &str) -> (String, String, String) {
    (tenant.to_owned(), ROOM.to_owned(), text.to_owned())
}

#[tokio::test]
async fn a_reply_committed_for_beta_never_reaches_acmes_chat_of_the_same_jid() {
    // Only acme has a channel: beta's reply for `fake:room` has nowhere to go, and acme's
    // channel, which owns `fake:room` for acme, must not take it.
    let (daemon, channels, _dir) = two_tenants(vec![acme()]).await;
    let acme_channel = &channels[0];
    let beta_reply = commit(&daemon, beta(), "beta's secret").await;
    // Control: acme's own reply to its chat is delivered (after beta's was tried).
    commit(&daemon, acme(), "acme's reply").await;
    acme_channel.wait_sent(1, WAIT).await;
    let store = Arc::clone(daemon.router().store());
    eventually_async("beta's reply was tried and refused", || {
        let store = Arc::clone(&store);
        async move {
            store
                .pending_outbox(10)
                .await
                .unwrap()
                .iter()
                .any(|r| r.id == beta_reply && r.attempts > 0)
        }
    })
    .await;
    assert_eq!(delivered(acme_channel), [row("acme", "acme's reply")]);
    let pending = store.pending_outbox(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].tenant.as_str(), pending[0].text.as_str()),
        ("beta", "beta's secret"),
        "beta's reply stays pending for beta"
    );
    daemon.force_stop().await;
}

#[tokio::test]
async fn each_tenants_reply_goes_to_its_own_tenants_channel() {
    let (daemon, channels, _dir) = two_tenants(vec![acme(), beta()]).await;
    let (acme_channel, beta_channel) = (&channels[0], &channels[1]);
    commit(&daemon, beta(), "to beta").await;
    beta_channel.wait_sent(1, WAIT).await;
    daemon.wait_idle().await;
    assert_eq!(delivered(beta_channel), [row("beta", "to beta")]);
    assert_eq!(delivered(acme_channel), []);
    // Control: acme's reply reaches acme's channel only.
    commit(&daemon, acme(), "to acme").await;
    acme_channel.wait_sent(1, WAIT).await;
    daemon.wait_idle().await;
    assert_eq!(delivered(acme_channel), [row("acme", "to acme")]);
    assert_eq!(delivered(beta_channel), [row("beta", "to beta")]);
    daemon.force_stop().await;
}

#[tokio::test]
async fn a_message_in_betas_chat_is_answered_in_betas_chat_only() {
    let (daemon, channels, _dir) = two_tenants(vec![acme(), beta()]).await;
    let (acme_channel, beta_channel) = (&channels[0], &channels[1]);
    beta_channel
        .inject(&beta(), ROOM, "Bob", "hello")
        .await
        .unwrap();
    beta_channel.wait_sent(1, WAIT).await;
    daemon.wait_idle().await;
    eventually("beta's typing indicator went off", || {
        beta_channel.typing().contains(&(ROOM.to_owned(), false))
    })
    .await;
    assert_eq!(delivered(beta_channel), [row("beta", "for beta fake:room")]);
    assert_eq!(delivered(acme_channel), []);
    assert_eq!(
        acme_channel.typing(),
        [],
        "no typing indicator of beta's run"
    );
    assert_eq!(acme_channel.deltas(), []);
    // Control: acme's message is answered in acme's chat.
    acme_channel
        .inject(&acme(), ROOM, "Alice", "hello")
        .await
        .unwrap();
    acme_channel.wait_sent(1, WAIT).await;
    daemon.wait_idle().await;
    assert_eq!(delivered(acme_channel), [row("acme", "for acme fake:room")]);
    assert_eq!(delivered(beta_channel), [row("beta", "for beta fake:room")]);
    daemon.force_stop().await;
}

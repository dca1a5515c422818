//! A web session's jid names its tenant (`web:<tenant>:...`): a reply, a delta or an ownership
//! question for another tenant is refused by the web channel itself, whatever the jid.

use cambot_channels::Channel;
use cambot_channels::Outbound;
use cambot_channels::web::session_jid;
use cambot_protocol::TenantId;
use serde_json::json;

use super::support::start;
use super::support::tagging_runner;
use super::support::web_config;

#[tokio::test]
async fn another_tenants_reply_never_reaches_a_web_session() {
    let d = start(tagging_runner(), web_config()).await;
    d.add_user("acme", "alice").await;
    let (token, _) = d.login("acme", "alice").await;
    let session = d.new_session(&token).await;
    let mut ws = d.ws(&token).await;
    ws.send(json!({"type": "subscribe", "session": session}))
        .await;
    assert_eq!(ws.next_of("subscribed").await["type"], "subscribed");
    let (acme, beta) = (
        TenantId::new("acme").unwrap(),
        TenantId::new("beta").unwrap(),
    );
    let jid = session_jid(&acme, "alice", &session).unwrap();

    assert!(d.channel.owns_jid(&acme, &jid));
    assert!(!d.channel.owns_jid(&beta, &jid));
    // A tenant whose id is a prefix of acme's owns nothing of acme either.
    assert!(!d.channel.owns_jid(&TenantId::new("acm").unwrap(), &jid));
    let refused = d
        .channel
        .send_message(Outbound {
            delivery_id: 900,
            tenant: &beta,
            chat_jid: &jid,
            text: "beta's reply",
        })
        .await;
    assert!(refused.is_err(), "a reply of beta for acme's session");
    d.channel.stream_delta(&beta, &jid, "beta's delta").await;

    // Control: acme's own delta and reply arrive, and they are the first frames the socket gets.
    d.channel.stream_delta(&acme, &jid, "acme's delta").await;
    d.channel
        .send_message(Outbound {
            delivery_id: 901,
            tenant: &acme,
            chat_jid: &jid,
            text: "acme's reply",
        })
        .await
        .unwrap();
    assert_eq!(ws.next_of("delta").await["text"], "acme's delta");
    let reply = ws.next_of("reply").await;
    assert_eq!(
        (reply["id"].as_i64(), reply["text"].as_str()),
        (Some(901), Some("acme's reply"))
    );
    d.daemon_shutdown().await;
}

//! The runner's constructor: every call goes to the host socket under
//! `/v1/model/<provider>/...` with the run token and without any key.

use cambot_providers::Dialect;
use cambot_providers::HttpProvider;
use cambot_providers::ProviderExt;
use cambot_testkit::standin::Script;

use super::support::*;

#[tokio::test]
async fn via_gateway_routes_by_provider_name_with_the_run_token_and_no_key() {
    let dir = tempfile::tempdir().unwrap();
    for d in Dialect::ALL {
        let socket = dir.path().join(format!("host-{d}.sock"));
        let h = builder(d)
            .reply(Script::text("through the gateway"))
            .start_unix(&socket)
            .await
            .unwrap();
        let mut c = config(d, "http://unused.invalid");
        c.name = "claude-main".into();
        let p = HttpProvider::via_gateway(c, &socket, "run-token-42").unwrap();
        let msg = p.complete(hi()).await.unwrap();
        assert_eq!(msg.text(), "through the gateway");
        let r = h.request(0).unwrap();
        let want = match d {
            Dialect::Anthropic => "/v1/model/claude-main/v1/messages",
            Dialect::OpenAi => "/v1/model/claude-main/chat/completions",
            Dialect::Ollama => "/v1/model/claude-main/api/chat",
        };
        assert_eq!(r.path, want);
        assert_eq!(
            r.header(cambot_protocol::RUN_TOKEN_HEADER),
            Some("run-token-42")
        );
        assert_eq!(r.header("x-api-key"), None);
        assert_eq!(r.header("authorization"), None);
    }
}

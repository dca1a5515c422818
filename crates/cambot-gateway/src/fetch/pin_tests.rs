//! The connection goes to exactly the checked addresses: a name the system resolver cannot
//! resolve (`.invalid` never does) is reached at the address it was checked with, so no second
//! lookup can answer differently (DNS rebinding).

use std::net::SocketAddr;

use cambot_testkit::http_target::Answer;
use cambot_testkit::http_target::HttpTarget;
use url::Url;

use super::Target;
use super::send;

#[tokio::test]
async fn a_checked_name_is_connected_at_its_checked_address_without_a_second_lookup() {
    let server = HttpTarget::start(|_| Answer::ok("text/plain", &[], b"pinned"))
        .await
        .unwrap();
    let port = server.port();
    let target = Target {
        url: Url::parse(&format!("http://pinned.invalid:{port}/x")).unwrap(),
        domain: Some("pinned.invalid".into()),
        addrs: vec![SocketAddr::from(([127, 0, 0, 1], port))],
    };
    let resp = send(&target, super::Outbound::default()).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "pinned");
    assert_eq!(server.paths(), ["/x"]);

    assert_eq!(server.accepted(), 1);
}

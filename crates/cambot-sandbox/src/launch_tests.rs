#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[test]
fn an_order_survives_the_wire() {
    let order = LaunchOrder {
        program: PathBuf::from("/usr/bin/bwrap"),
        args: vec!["--unshare-all".to_owned(), "--".to_owned(), "x".to_owned()],
        data_fds: vec![(10, vec![0, 1, 255])],
        stage: Some(vec![StagedMount {
            source: b"/root/data/groups/a".to_vec(),
            follow: false,
            target: b"/tmp/0".to_vec(),
            is_dir: true,
        }]),
        rlimits: vec![(libc::RLIMIT_CORE, 0)],
        drop_to: Some((10000, 10000)),
        stdio: Some([6, 7, 8]),
    };
    let bytes = serde_json::to_vec(&order).unwrap();
    assert_eq!(
        serde_json::from_slice::<LaunchOrder>(&bytes).unwrap(),
        order
    );
}

#[test]
fn a_malformed_order_is_refused_with_the_reason() {
    let err = carry_out(b"{\"program\": 5}").unwrap_err();
    assert!(err.starts_with("invalid launch order:"), "{err}");
}

use super::*;

#[test]
fn passwords_hash_with_argon2id_and_verify() {
    let phc = hash_password("correct horse").unwrap_or_default();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    assert!(verify_password("correct horse", &phc));
    assert!(!verify_password("wrong", &phc));
    assert!(!verify_password("correct horse", "not a hash"));
    let mut blocks = Vec::new();
    assert!(verify_password_with("correct horse", &phc, &mut blocks));
    assert!(!verify_password_with("wrong", &phc, &mut blocks));
    assert!(!verify_password_with(
        "correct horse",
        "not a hash",
        &mut blocks
    ));
    assert_eq!(blocks.len(), 19 * 1024);
    // Parameters come from the stored hash, not from the defaults.
    let params = argon2::Params::new(8192, 1, 2, None).unwrap_or_default();
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let custom = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(b"other password", &salt)
        .map(|h| h.to_string())
        .unwrap_or_default();
    assert!(custom.contains("m=8192,t=1,p=2"), "{custom}");
    assert!(verify_password_with("other password", &custom, &mut blocks));
    assert!(!verify_password_with("correct horse", &custom, &mut blocks));
}

#[tokio::test]
async fn checks_run_on_the_password_thread_and_unknown_users_fail() {
    let phc = hash_password("correct horse").unwrap();
    assert!(
        check_password("correct horse".into(), Some(phc.clone()))
            .await
            .unwrap()
    );
    assert!(!check_password("wrong".into(), Some(phc)).await.unwrap());
    // No stored hash: checked against the dummy hash (same cost), never accepted.
    assert!(
        !check_password("cambot-dummy-password".into(), None)
            .await
            .unwrap()
    );
}

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
async fn checks_run_on_the_password_threads_and_unknown_users_fail() {
    let pool = PasswordPool::new(2, 4).unwrap();
    let phc = hash_password("correct horse").unwrap();
    assert!(
        pool.check("correct horse".into(), Some(phc.clone()))
            .await
            .unwrap()
    );
    assert!(!pool.check("wrong".into(), Some(phc)).await.unwrap());
    // No stored hash: checked against the dummy hash (same cost), never accepted.
    assert!(
        !pool
            .check("cambot-dummy-password".into(), None)
            .await
            .unwrap()
    );
}

/// Beyond the threads and the queue, a check is refused at once rather than queued.
#[tokio::test]
async fn a_full_queue_refuses_instead_of_waiting() {
    let pool = PasswordPool::new(1, 1).unwrap();
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let (started_tx, started) = tokio::sync::oneshot::channel();
    // Occupies the only thread until released (the first poll queues the job).
    let mut busy = Box::pin(pool.run(move |_| {
        let _ = started_tx.send(());
        let _ = hold.recv();
    }));
    assert!(futures::poll!(&mut busy).is_pending());
    started.await.unwrap();
    // Fills the queue.
    let mut queued = Box::pin(pool.run(|_| 1));
    assert!(futures::poll!(&mut queued).is_pending());
    assert!(matches!(pool.run(|_| 2).await, Err(PasswordError::Busy)));
    release.send(()).unwrap();
    busy.await.unwrap();
    assert_eq!(queued.await.unwrap(), 1);
}

//! Master key rotation killed at spread points of its run leaves a vault that opens from the
//! key file(s) left, every secret intact; a finished rotation leaves the old key useless. And
//! the database file and its WAL never hold a value in the clear.

use std::time::Instant;

use cambot_gateway::Secret;
use nix::sys::signal::Signal;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use super::vault_support::*;

const TENANTS: usize = 300;
const KILLS: usize = 16;

fn value_of(i: usize) -> String {
    format!("sk-tenant-{i:03}-9d8c7b6a5f4e")
}

/// Opens the vault from what is on disk and checks every tenant's value; returns which key
/// file content opened it.
async fn check_all(v: &VaultDirs) -> String {
    let store = v.store();
    let vault = v.open(&store, false).await;
    for i in 0..TENANTS {
        let found = vault
            .get(&tenant(&format!("t{i}")), "api")
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("t{i} lost its secret"));
        assert_eq!(found.value.expose(), value_of(i));
    }
    let next = v.key.with_file_name("master.key.next");
    assert!(!next.exists(), "the loader leaves no .next behind");
    std::fs::read_to_string(&v.key).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_killed_anywhere_leaves_every_secret_readable() {
    let v = VaultDirs::new();
    {
        let store = v.store();
        let vault = v.open(&store, true).await;
        for i in 0..TENANTS {
            let value = Secret::new(value_of(i));
            vault
                .set(&tenant(&format!("t{i}")), "api", &value, None)
                .await
                .unwrap();
        }
    }
    // One uninterrupted rotation, timed, to spread the kills over its run.
    let start = Instant::now();
    ok(v.run(&["secrets", "rotate-master"], ""));
    let full = start.elapsed();
    let mut key = check_all(&v).await;
    let (mut old_kept, mut new_taken) = (0, 0);
    for k in 0..KILLS {
        let delay = full.mul_f64(k as f64 / (KILLS - 1) as f64);
        let mut child = v
            .command(Some(&v.key), &["secrets", "rotate-master"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap());
        // The child may have finished already: then this kill finds nothing, which is fine.
        let _ = kill(pid, Signal::SIGKILL);
        child.wait().unwrap();
        let after = check_all(&v).await;
        if after == key {
            old_kept += 1;
        } else {
            new_taken += 1;
        }
        key = after;
    }
    eprintln!(
        "rotation took {full:?}; of {KILLS} kills, {old_kept} left the old key, {new_taken} the new"
    );

    // A clean rotation: afterwards the old key opens nothing.
    let old = v.key.with_file_name("old.key");
    std::fs::copy(&v.key, &old).unwrap();
    ok(v.run(&["secrets", "rotate-master"], ""));
    check_all(&v).await;
    fails_with(
        &v.run_with(Some(&old), &["secrets", "verify"], "", &[]),
        "does not open this vault",
    );
    let out = ok(v.run(&["secrets", "verify"], ""));
    assert!(
        out.starts_with(&format!("{TENANTS} secret(s) decrypt")),
        "{out}"
    );
}

#[tokio::test]
async fn the_database_and_its_wal_never_hold_a_value() {
    let v = VaultDirs::new();
    let store = v.store();
    let vault = v.open(&store, true).await;
    let value = "sk-plaintext-needle-51f0e2";
    vault
        .set(&tenant("acme"), "api", &Secret::new(value), Some(1))
        .await
        .unwrap();
    vault
        .set(&tenant("acme"), "api2", &Secret::new(value), None)
        .await
        .unwrap();
    // The store stays open: the WAL holds the new pages, not yet checkpointed.
    let wal = v.data.join("cambot.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    for file in [v.data.join("cambot.db"), wal] {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(value.len()).any(|w| w == value.as_bytes()),
            "{} holds the value",
            file.display()
        );
    }
    // The value is there, sealed: a lookup finds it.
    let found = vault.get(&tenant("acme"), "api").await.unwrap().unwrap();
    assert_eq!((found.value.expose(), found.expires_ms), (value, Some(1)));
    drop(vault);
    drop(store);
    assert!(files_containing(&v.data, value.as_bytes()).is_empty());
}

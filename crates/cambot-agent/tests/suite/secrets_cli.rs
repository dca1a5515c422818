//! `cambot secrets` through the real binary: set, list, rm, verify without ever showing a
//! value; a sealed row copied to another tenant or name refused with a clear error; a missing,
//! wrong or loosely protected master key refused, naming where it looked.

use std::os::unix::fs::PermissionsExt;

use cambot_agent::vault::VaultError;
use cambot_core::VaultStore;

use super::vault_support::*;

const ACME_KEY: &str = "sk-acme-7f3a9c2e5b1d";
const DEFAULT_KEY: &str = "sk-default-0c4e8a6f2d";

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn secrets_are_set_listed_removed_and_verified_without_showing_a_value() {
    let v = VaultDirs::new();
    let mut outputs = Vec::new();
    let mut keep = |cli: super::support::CliOut| {
        outputs.push(format!("{}{}", cli.stdout, cli.stderr));
        cli
    };
    ok(keep(v.run(&["tenants", "add", "acme"], "")));
    assert!(!v.key.exists());
    // The first set creates the key file (0600) and its directory (0700).
    ok(keep(v.run(
        &["secrets", "set", "anthropic"],
        &format!("{DEFAULT_KEY}\n"),
    )));
    assert_eq!(mode(&v.key), 0o600);
    assert_eq!(mode(v.key.parent().unwrap()), 0o700);
    ok(keep(v.run(
        &["secrets", "set", "--tenant", "acme", "anthropic"],
        ACME_KEY,
    )));
    ok(keep(v.run(
        &["secrets", "set", "--tenant", "acme", "github.token"],
        "ghp_value\n",
    )));
    fails_with(
        &keep(v.run(&["secrets", "set", "--tenant", "acme", "x"], "\n")),
        "empty value for secret x",
    );
    fails_with(
        &keep(v.run(&["secrets", "set", "bad/name"], "v")),
        "invalid secret name",
    );
    fails_with(
        &keep(v.run(&["secrets", "set", "--tenant", "nobody", "x"], "v")),
        "unknown tenant nobody",
    );

    let listing = ok(keep(v.run(&["secrets", "list", "--tenant", "acme"], "")));
    let names: Vec<&str> = listing
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, ["anthropic", "github.token"]);
    let listing = ok(keep(v.run(&["secrets", "list"], "")));
    assert_eq!(listing.lines().count(), 2, "{listing}");

    let verified = ok(keep(v.run(&["secrets", "verify"], "")));
    assert!(verified.starts_with("3 secret(s) decrypt"), "{verified}");
    let doctor = keep(v.run(&["doctor"], ""));
    assert!(
        doctor
            .stdout
            .contains("[ ok ] vault master key: from CAMBOT_MASTER_KEY_FILE")
            && doctor
                .stdout
                .contains("(mode 0600), outside the data directory")
            && doctor
                .stdout
                .contains("[ ok ] vault: opens; 3 secret(s) decrypt"),
        "{}",
        doctor.stdout
    );

    ok(keep(v.run(
        &["secrets", "rm", "--tenant", "acme", "github.token"],
        "",
    )));
    fails_with(
        &keep(v.run(&["secrets", "rm", "--tenant", "acme", "github.token"], "")),
        "tenant acme has no secret \"github.token\"",
    );
    let verified = ok(keep(v.run(&["secrets", "verify"], "")));
    assert!(verified.starts_with("2 secret(s)"), "{verified}");

    for out in &outputs {
        for value in [ACME_KEY, DEFAULT_KEY, "ghp_value"] {
            assert!(!out.contains(value), "a value was printed: {out}");
        }
    }
    for value in [ACME_KEY, DEFAULT_KEY, "ghp_value"] {
        assert_eq!(
            files_containing(&v.data, value.as_bytes()),
            Vec::<std::path::PathBuf>::new()
        );
    }
}

/// Copies the sealed bytes of `(from_tenant, from_name)` into `(to_tenant, to_name)`'s row.
async fn copy_row(store: &cambot_core::SqliteStore, from: (&str, &str), to: (&str, &str)) {
    let mut row = store
        .vault_secret(&tenant(from.0), from.1)
        .await
        .unwrap()
        .unwrap();
    row.tenant = tenant(to.0);
    row.name = to.1.to_owned();
    store.put_vault_secret(row).await.unwrap();
}

#[tokio::test]
async fn a_sealed_row_copied_to_another_tenant_or_name_does_not_decrypt() {
    let v = VaultDirs::new();
    ok(v.run(&["tenants", "add", "acme"], ""));
    ok(v.run(&["tenants", "add", "beta"], ""));
    ok(v.run(&["secrets", "set", "--tenant", "acme", "api"], ACME_KEY));
    ok(v.run(
        &["secrets", "set", "--tenant", "acme", "other"],
        "other-value",
    ));
    ok(v.run(&["secrets", "set", "--tenant", "beta", "api"], "beta-value"));
    let store = v.store();

    // To another tenant: beta's row now holds acme's sealed value.
    copy_row(&store, ("acme", "api"), ("beta", "api")).await;
    let cli = v.run(&["secrets", "verify"], "");
    fails_with(&cli, "secret api of tenant beta does not decrypt");
    assert!(!cli.stderr.contains(ACME_KEY));
    let vault = v.open(&store, false).await;
    let err = vault.get(&tenant("beta"), "api").await.unwrap_err();
    assert!(
        matches!(&err, VaultError::Undecryptable { tenant, name } if tenant.as_str() == "beta" && name == "api"),
        "{err}"
    );
    assert!(!err.to_string().contains(ACME_KEY));
    // acme's own row is untouched and still opens.
    let found = vault.get(&tenant("acme"), "api").await.unwrap().unwrap();
    assert_eq!(found.value.expose(), ACME_KEY);

    // To another name of the same tenant.
    ok(v.run(&["secrets", "set", "--tenant", "beta", "api"], "beta-value"));
    copy_row(&store, ("acme", "api"), ("acme", "other")).await;
    fails_with(
        &v.run(&["secrets", "verify"], ""),
        "secret other of tenant acme does not decrypt",
    );
    let err = vault.get(&tenant("acme"), "other").await.unwrap_err();
    assert!(matches!(err, VaultError::Undecryptable { .. }), "{err}");
    assert!(vault.values(&tenant("acme")).await.is_err());
}

#[test]
fn a_missing_wrong_or_exposed_master_key_is_refused_naming_where_it_looked() {
    let v = VaultDirs::new();
    ok(v.run(&["secrets", "set", "anthropic"], DEFAULT_KEY));

    // Missing, named explicitly.
    let gone = v.key.with_file_name("gone.key");
    let cli = v.run_with(Some(&gone), &["secrets", "verify"], "", &[]);
    fails_with(&cli, "the vault holds secrets but no master key was found");
    fails_with(
        &cli,
        &format!("CAMBOT_MASTER_KEY_FILE={} (not found)", gone.display()),
    );
    // A set on a vault with data never creates a replacement key.
    fails_with(
        &v.run_with(Some(&gone), &["secrets", "set", "x"], "v", &[]),
        "no master key was found",
    );
    assert!(!gone.exists());

    // Missing, every source: names each place (the default is /etc/cambot for root, else
    // under HOME; only read here, never created, because the vault has data).
    let empty_creds = v.home.join("creds");
    std::fs::create_dir_all(&empty_creds).unwrap();
    let cli = v.run_with(
        None,
        &["secrets", "verify"],
        "",
        &[("CREDENTIALS_DIRECTORY", &empty_creds)],
    );
    fails_with(&cli, "CAMBOT_MASTER_KEY_FILE (not set)");
    fails_with(
        &cli,
        &format!("{}/cambot-master-key (not found)", empty_creds.display()),
    );
    fails_with(&cli, "master.key (not found)");

    // Wrong key.
    let other = v.key.with_file_name("other.key");
    std::fs::write(&other, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    fails_with(
        &v.run_with(Some(&other), &["secrets", "verify"], "", &[]),
        &format!(
            "master key from {} does not open this vault",
            other.display()
        ),
    );

    // Group/other permission bits.
    std::fs::set_permissions(&v.key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let cli = v.run(&["secrets", "verify"], "");
    fails_with(
        &cli,
        &format!("master key file {} has mode 0640", v.key.display()),
    );
    let doctor = v.run(&["doctor"], "");
    assert!(doctor.stdout.contains("[FAIL] vault:"), "{}", doctor.stdout);
    std::fs::set_permissions(&v.key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A systemd credential works, and cannot be rotated in place.
    let creds = v.home.join("creds2");
    std::fs::create_dir_all(&creds).unwrap();
    let cred = creds.join("cambot-master-key");
    std::fs::copy(&v.key, &cred).unwrap();
    std::fs::set_permissions(&cred, std::fs::Permissions::from_mode(0o400)).unwrap();
    let env = [("CREDENTIALS_DIRECTORY", creds.as_path())];
    let out = ok(v.run_with(None, &["secrets", "verify"], "", &env));
    assert!(out.contains("from systemd credential"), "{out}");
    fails_with(
        &v.run_with(None, &["secrets", "rotate-master"], "", &env),
        "which is read-only",
    );
}

/// `tenants rm` without `--purge` refuses a tenant that still has secrets (it used to delete
/// them silently); `--purge --yes` removes them with the tenant.
#[test]
fn removing_a_tenant_with_secrets_needs_a_purge() {
    let v = VaultDirs::new();
    ok(v.run(&["tenants", "add", "acme"], ""));
    ok(v.run(
        &["secrets", "set", "--tenant", "acme", "anthropic"],
        ACME_KEY,
    ));
    ok(v.run(&["secrets", "set", "--tenant", "acme", "github"], "ghp_x"));
    fails_with(
        &v.run(&["tenants", "rm", "acme"], ""),
        "tenant acme has 2 secrets; remove them with `cambot secrets rm --tenant acme NAME` or use --purge",
    );
    let listing = ok(v.run(&["secrets", "list", "--tenant", "acme"], ""));
    assert!(
        listing.contains("anthropic") && listing.contains("github"),
        "{listing}"
    );

    // Once its secrets are removed, a plain rm works.
    ok(v.run(&["tenants", "add", "beta"], ""));
    ok(v.run(
        &["secrets", "set", "--tenant", "beta", "anthropic"],
        ACME_KEY,
    ));
    fails_with(
        &v.run(&["tenants", "rm", "beta"], ""),
        "tenant beta has 1 secret;",
    );
    ok(v.run(&["secrets", "rm", "--tenant", "beta", "anthropic"], ""));
    ok(v.run(&["tenants", "rm", "beta"], ""));

    let purged = ok(v.run(&["tenants", "rm", "acme", "--purge", "--yes"], ""));
    assert!(purged.contains("purged tenant acme"), "{purged}");
    let rows = vault_rows(&v);
    assert_eq!(rows, 0, "acme's vault rows survived the purge");
}

/// acme's vault rows (secrets and data key) left in the store.
fn vault_rows(v: &VaultDirs) -> usize {
    let store = v.store();
    let acme = tenant("acme");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        store.vault_secrets(Some(&acme)).await.unwrap().len()
            + usize::from(store.vault_dek(&acme).await.unwrap().is_some())
    })
}

/// `cambot doctor` checks the files at rest in one place: the data directory and database
/// modes, the master key (source, path, mode, outside the data dir), the vault (opens, every
/// secret decrypts) and the web signing keys (sealed, each opens): a loose install fails the
/// lines that are wrong, a sound one passes them.
#[tokio::test]
async fn doctor_fails_a_loose_install_and_passes_a_sound_one() {
    let v = VaultDirs::new();
    ok(v.run(&["tenants", "add", "acme"], ""));
    ok(v.run(
        &["secrets", "set", "--tenant", "acme", "anthropic"],
        ACME_KEY,
    ));
    // A signing key as an older cambot stored it, in plaintext.
    let store = v.store();
    let private_key: Vec<u8> = (0..83u8).map(|b| b ^ 0x5c).collect();
    cambot_core::UserStore::add_signing_key(
        store.as_ref(),
        &cambot_core::SigningKeyRow {
            kid: "00112233445566778899aabbccddeeff".into(),
            tenant: tenant("acme"),
            algorithm: "EdDSA".into(),
            private_key,
            public_key: vec![7; 32],
            created_ms: 1,
            sealed: false,
        },
    )
    .await
    .unwrap();
    std::fs::set_permissions(&v.data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        v.data.join("cambot.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::set_permissions(&v.key, std::fs::Permissions::from_mode(0o644)).unwrap();

    let doctor = v.run(&["doctor"], "").stdout;
    let line = |out: &str, what: &str| -> String {
        out.lines()
            .find(|l| l[6..].starts_with(&format!(" {what}:")))
            .unwrap_or_else(|| panic!("no {what} line in:\n{out}"))
            .to_owned()
    };
    for (what, says) in [
        ("data directory mode", "0755"),
        ("database file modes", "cambot.db 0644"),
        ("vault master key", "group and others must have no access"),
        ("vault", "has mode 0644"),
        ("web signing keys", "1 key(s) stored in plaintext"),
    ] {
        let l = line(&doctor, what);
        assert!(l.starts_with("[FAIL]") && l.contains(says), "{l}\n{doctor}");
    }
    // Each check is reported once.
    for what in [
        "vault master key",
        "vault",
        "database file modes",
        "web signing keys",
    ] {
        let n = doctor
            .lines()
            .filter(|l| l[6..].starts_with(&format!(" {what}:")))
            .count();
        assert_eq!(n, 1, "{what} in:\n{doctor}");
    }

    // Sound: the modes tightened (doctor itself tightens the data dir; the key by hand), the
    // plaintext key sealed as the daemon's start does.
    std::fs::set_permissions(&v.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let vault = v.open(&store, false).await;
    assert_eq!(
        cambot_agent::vault::seal_signing_keys(&vault, store.as_ref())
            .await
            .unwrap(),
        1
    );
    let doctor = v.run(&["doctor"], "").stdout;
    for (what, says) in [
        ("data directory mode", "0700"),
        ("database file modes", "cambot.db 0600"),
        ("vault master key", "outside the data directory"),
        ("vault", "opens; 1 secret(s) decrypt"),
        (
            "web signing keys",
            "1 sealed, each opens with the vault; none in plaintext",
        ),
        ("run directories", ""),
    ] {
        let l = line(&doctor, what);
        assert!(l.starts_with("[ ok ]") && l.contains(says), "{l}\n{doctor}");
    }

    // A key file inside the data directory fails its line.
    let inside = v.data.join("master.key");
    std::fs::copy(&v.key, &inside).unwrap();
    std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o600)).unwrap();
    let doctor = v.run_with(Some(&inside), &["doctor"], "", &[]).stdout;
    let l = line(&doctor, "vault master key");
    assert!(
        l.starts_with("[FAIL]") && l.contains("lies inside the data directory"),
        "{l}"
    );
}

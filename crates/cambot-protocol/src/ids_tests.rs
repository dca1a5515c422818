use super::*;

// Ported from the seed's group-folder.test.ts.
#[test]
fn seed_valid_folders() {
    for ok in ["main", "family-chat", "Team_42"] {
        assert!(GroupFolder::new(ok).is_ok(), "{ok} should be valid");
    }
}

#[test]
fn seed_invalid_folders() {
    for bad in ["../../etc", "/tmp", "global", ""] {
        assert!(GroupFolder::new(bad).is_err(), "{bad:?} should be invalid");
    }
}

#[test]
fn folder_rejects_reserved_any_case_and_padding_and_separators() {
    for bad in [
        "GLOBAL", "Global", " main", "main ", "a/b", "a\\b", "..", ".", "-lead", "_lead", "a:b",
        "a.b", "ü",
    ] {
        assert!(GroupFolder::new(bad).is_err(), "{bad:?} should be invalid");
    }
    let long = "a".repeat(65);
    assert!(matches!(
        GroupFolder::new(&long),
        Err(IdError::TooLong { .. })
    ));
    assert!(GroupFolder::new(&"a".repeat(64)).is_ok());
}

#[test]
fn main_folder_is_main() {
    assert!(GroupFolder::main().is_main());
    assert!(!GroupFolder::new("Main").unwrap().is_main());
}

#[test]
fn deserialize_validates() {
    let ok: GroupFolder = serde_json::from_str("\"family-chat\"").unwrap();
    assert_eq!(ok.as_str(), "family-chat");
    let err = serde_json::from_str::<GroupFolder>("\"../../etc\"").unwrap_err();
    assert!(err.to_string().contains("invalid"), "{err}");
    assert!(serde_json::from_str::<TenantId>("\"a/b\"").is_err());
}

#[test]
fn tenant_ids_are_lowercase_letters_digits_and_dashes() {
    for ok in ["default", "acme", "a", "beta-2", "9lives", &"a".repeat(63)] {
        assert!(TenantId::new(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "Acme",
        "acme_corp",
        "-acme",
        "a.b",
        "a/b",
        "a b",
        "ac\u{e9}me",
        &"a".repeat(64),
    ] {
        assert!(TenantId::new(bad).is_err(), "{bad:?}");
    }
    let err = TenantId::new("Acme").unwrap_err().to_string();
    assert!(err.contains("a-z 0-9 -"), "{err}");
    assert!(TenantId::default_tenant().is_default());
    assert!(serde_json::from_str::<TenantId>("\"ACME\"").is_err());
}

#[test]
fn chat_jid_rules() {
    assert!(ChatJid::new("cli:console").is_ok());
    assert!(ChatJid::new("120363@g.us").is_ok());
    assert!(ChatJid::new("").is_err());
    assert!(ChatJid::new("a\nb").is_err());
    assert!(ChatJid::new(&"x".repeat(257)).is_err());
}

#[test]
fn run_id_round_trip() {
    let id = RunId::from_bytes([0xab; 16]);
    assert_eq!(id.as_str(), "abababababababababababababababab");
    assert_eq!(RunId::new(id.as_str()).unwrap(), id);
    assert!(RunId::new("ABABABABABABABABABABABABABABABAB").is_err());
    assert!(RunId::new("../x").is_err());
}

#[test]
fn task_id_rules() {
    assert!(TaskId::new("task-1700000000000-abc123").is_ok());
    assert!(TaskId::new("../x").is_err());
    assert!(TaskId::new("a b").is_err());
}

#[test]
fn generated_task_ids_are_valid() {
    let id = TaskId::generate(1_700_000_000_000, [0, 35, 36, 255, 7, 100]);
    // 0 -> '0', 35 -> 'z', 36 -> '0', 255 % 36 = 3 -> '3', 7 -> '7', 100 % 36 = 28 -> 's'
    assert_eq!(id.as_str(), "task-1700000000000-0z037s");
    assert!(TaskId::new(id.as_str()).is_ok());
    assert_eq!(id.as_str().len(), "task-1700000000000-".len() + 6);
}

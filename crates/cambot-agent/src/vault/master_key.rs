//! Where the master key (KEK) comes from, and its file on disk: reading (refusing group/other
//! permission bits like ssh does), creating on first use, and the `.next` file a rotation
//! writes before it commits.
//!
//! Sources, in order: the file named by `CAMBOT_MASTER_KEY_FILE` (created if missing while the
//! vault is still empty), systemd's `$CREDENTIALS_DIRECTORY/cambot-master-key` (read-only),
//! else `/etc/cambot/master.key` for root and `~/.config/cambot/master.key` otherwise (created
//! on first use while the vault is empty).

use std::fs::OpenOptions;
use std::io::Read;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;

use zeroize::Zeroizing;

use super::error::VaultError;
use super::seal;
use super::seal::KEY_LEN;
use super::seal::KeyBytes;

/// Names the key file (never the key itself: environments are inherited and readable).
pub const KEY_FILE_ENV: &str = "CAMBOT_MASTER_KEY_FILE";
/// The credential's name under systemd's `$CREDENTIALS_DIRECTORY`.
pub const CREDENTIAL_NAME: &str = "cambot-master-key";

/// Which source a key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// `CAMBOT_MASTER_KEY_FILE`.
    EnvFile,
    /// `$CREDENTIALS_DIRECTORY/cambot-master-key` (systemd `LoadCredential[Encrypted]=`).
    SystemdCredential,
    /// `/etc/cambot/master.key` (root) or `~/.config/cambot/master.key`.
    DefaultFile,
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::EnvFile => KEY_FILE_ENV,
            Self::SystemdCredential => "systemd credential",
            Self::DefaultFile => "default key file",
        })
    }
}

/// Where the key is (or would be created), and every place looked on the way, for errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLocation {
    pub source: KeySource,
    pub path: PathBuf,
    /// `place (finding)` for each source considered, in order.
    pub looked: Vec<String>,
}

impl KeyLocation {
    /// The file a rotation writes the new key to before it commits.
    pub fn next_path(&self) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(".next");
        PathBuf::from(name)
    }

    /// Whether a key may be written here (created, rotated).
    pub fn writable(&self) -> bool {
        self.source != KeySource::SystemdCredential
    }

    fn looked(&self) -> String {
        self.looked.join("; ")
    }
}

/// The default key file: `/etc/cambot/master.key` for root, `$HOME/.config/cambot/master.key`
/// otherwise (`None` without a home).
pub fn default_key_path(euid: u32, home: Option<&Path>) -> Option<PathBuf> {
    if euid == 0 {
        return Some(PathBuf::from("/etc/cambot/master.key"));
    }
    home.filter(|h| !h.as_os_str().is_empty())
        .map(|h| h.join(".config/cambot/master.key"))
}

/// Picks the key's source from the environment (`env` reads a variable) and the effective uid.
pub fn locate(env: &dyn Fn(&str) -> Option<String>, euid: u32) -> Result<KeyLocation, VaultError> {
    let mut looked = Vec::new();
    match env(KEY_FILE_ENV).filter(|v| !v.is_empty()) {
        Some(path) => {
            looked.push(format!("{KEY_FILE_ENV}={path}"));
            return Ok(KeyLocation {
                source: KeySource::EnvFile,
                path: PathBuf::from(path),
                looked,
            });
        }
        None => looked.push(format!("{KEY_FILE_ENV} (not set)")),
    }
    match env("CREDENTIALS_DIRECTORY").filter(|v| !v.is_empty()) {
        Some(dir) => {
            let path = Path::new(&dir).join(CREDENTIAL_NAME);
            if path.exists() {
                looked.push(path.display().to_string());
                return Ok(KeyLocation {
                    source: KeySource::SystemdCredential,
                    path,
                    looked,
                });
            }
            looked.push(format!("{} (not found)", path.display()));
        }
        None => looked.push(format!(
            "$CREDENTIALS_DIRECTORY/{CREDENTIAL_NAME} (not set)"
        )),
    }
    let home = env("HOME").map(PathBuf::from);
    let path = default_key_path(euid, home.as_deref()).ok_or(VaultError::NoHome)?;
    looked.push(path.display().to_string());
    Ok(KeyLocation {
        source: KeySource::DefaultFile,
        path,
        looked,
    })
}

/// [`locate`] with this process's environment and effective uid.
pub fn locate_from_env() -> Result<KeyLocation, VaultError> {
    locate(&|k| std::env::var(k).ok(), nix::unistd::geteuid().as_raw())
}

/// The master key, wiped when dropped, with where it came from.
pub struct MasterKey {
    key: KeyBytes,
    location: KeyLocation,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    pub(crate) fn new(key: KeyBytes, location: KeyLocation) -> Self {
        Self { key, location }
    }

    pub fn location(&self) -> &KeyLocation {
        &self.location
    }

    pub(crate) fn bytes(&self) -> &KeyBytes {
        &self.key
    }
}

/// Loads the key for a vault whose stored check is `check` (`None`: the vault was never used).
///
/// With a check, the key file and a rotation's `.next` are both tried: whichever opens the
/// check wins. A winning `.next` (a rotation committed, then stopped before renaming) is
/// promoted; a losing one (a rotation stopped before committing) is removed. Without a check,
/// the key file is used, or created when `create` and the location is writable; `Ok(None)`
/// when there is none and `create` is false.
pub fn load(
    location: &KeyLocation,
    check: Option<&[u8]>,
    create: bool,
    data_dir: Option<&Path>,
) -> Result<Option<MasterKey>, VaultError> {
    let path = &location.path;
    let current = read_key_file(path)?;
    let Some(check) = check else {
        let key = match current {
            Some(key) => key,
            None if create && location.writable() => {
                let key = seal::random_key();
                write_key_file(path, &key)?;
                tracing::info!(path = %path.display(), "created a new vault master key (back it up offline)");
                key
            }
            None => return Ok(None),
        };
        warn_if_inside(path, data_dir);
        return Ok(Some(MasterKey::new(key, location.clone())));
    };
    let next_path = location.next_path();
    let next = if location.writable() {
        read_key_file(&next_path)?
    } else {
        None
    };
    if let Some(key) = current.as_ref().filter(|k| seal::opens_check(k, check)) {
        if next.is_some() {
            // A rotation stopped before its commit: its new key never sealed anything.
            remove(&next_path)?;
            tracing::warn!(path = %next_path.display(), "removed the key of a rotation that did not commit");
        }
        warn_if_inside(path, data_dir);
        return Ok(Some(MasterKey::new(
            Zeroizing::clone(key),
            location.clone(),
        )));
    }
    if let Some(key) = next.filter(|k| seal::opens_check(k, check)) {
        promote_next(location)?;
        tracing::warn!(path = %path.display(), "finished an interrupted master key rotation: the new key replaced the old one");
        warn_if_inside(path, data_dir);
        return Ok(Some(MasterKey::new(key, location.clone())));
    }
    if current.is_some() {
        return Err(VaultError::WrongKey { path: path.clone() });
    }
    let mut looked = location.looked();
    looked.push_str(" (not found)");
    Err(VaultError::NoKey { looked })
}

/// Reads a key file; `None` when it does not exist.
fn read_key_file(path: &Path) -> Result<Option<KeyBytes>, VaultError> {
    let io = |what| {
        let path = path.to_owned();
        move |source| VaultError::KeyFile { path, what, source }
    };
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("cannot open")(e)),
    };
    let mode = file
        .metadata()
        .map_err(io("cannot stat"))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(VaultError::LooseMode {
            path: path.to_owned(),
            mode: mode & 0o7777,
        });
    }
    let mut raw = Zeroizing::new(Vec::with_capacity(80));
    // A key file is tiny; reading at most a little more than a hex key tells a wrong file.
    (&mut file)
        .take(128)
        .read_to_end(&mut raw)
        .map_err(io("cannot read"))?;
    parse_key(&raw)
        .map(Some)
        .ok_or_else(|| VaultError::KeyFormat {
            path: path.to_owned(),
        })
}

/// 32 raw bytes, or 64 hex characters with an optional trailing newline.
fn parse_key(raw: &[u8]) -> Option<KeyBytes> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if raw.len() == KEY_LEN {
        key.copy_from_slice(raw);
        return Some(key);
    }
    let text = raw.strip_suffix(b"\n").unwrap_or(raw);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    hex::decode_to_slice(text, key.as_mut_slice()).ok()?;
    Some(key)
}

/// Writes `key` (hex) to `path` atomically: a 0600 temporary file in the same directory (made
/// 0700 if it is created), fsynced, renamed over `path`, the directory fsynced.
pub(crate) fn write_key_file(path: &Path, key: &KeyBytes) -> Result<(), VaultError> {
    let io = |what| {
        let path = path.to_owned();
        move |source| VaultError::KeyFile { path, what, source }
    };
    let dir = parent(path);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io("cannot create its directory"))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.unwrap_or_default(),
        std::process::id()
    ));
    let mut text = Zeroizing::new(hex::encode(key.as_slice()));
    text.push('\n');
    // A leftover of a killed run may exist with other permissions: start from nothing.
    remove(&tmp)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("cannot create a temporary file beside it"))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io("cannot write"))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io("cannot rename the temporary file over it"))?;
    sync_dir(dir).map_err(io("cannot sync its directory"))
}

/// Renames a rotation's `.next` over the key file (the rotation's last step).
pub(crate) fn promote_next(location: &KeyLocation) -> Result<(), VaultError> {
    let path = &location.path;
    std::fs::rename(location.next_path(), path).map_err(|source| VaultError::KeyFile {
        path: path.clone(),
        what: "cannot rename the rotated key over it",
        source,
    })?;
    sync_dir(parent(path)).map_err(|source| VaultError::KeyFile {
        path: path.clone(),
        what: "cannot sync its directory",
        source,
    })
}

fn remove(path: &Path) -> Result<(), VaultError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(VaultError::KeyFile {
            path: path.to_owned(),
            what: "cannot remove",
            source: e,
        }),
        _ => Ok(()),
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// The mode bits of the key file, for `cambot doctor`.
pub fn key_file_mode(path: &Path) -> Option<u32> {
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

/// Whether the key file lies inside the data directory (a copy of the data dir then carries
/// the key that opens it).
pub fn inside_data_dir(path: &Path, data_dir: &Path) -> bool {
    let key_dir = std::fs::canonicalize(parent(path)).unwrap_or_else(|_| parent(path).to_owned());
    let data = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    key_dir.starts_with(data)
}

fn warn_if_inside(path: &Path, data_dir: Option<&Path>) {
    if data_dir.is_some_and(|d| inside_data_dir(path, d)) {
        tracing::warn!(
            path = %path.display(),
            "the vault master key lies inside the data directory: a copy of that directory opens every secret; move it out and set CAMBOT_MASTER_KEY_FILE"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_location_depends_on_the_user() {
        assert_eq!(
            default_key_path(0, Some(Path::new("/root"))),
            Some(PathBuf::from("/etc/cambot/master.key"))
        );
        assert_eq!(
            default_key_path(1000, Some(Path::new("/home/ann"))),
            Some(PathBuf::from("/home/ann/.config/cambot/master.key"))
        );
        assert_eq!(default_key_path(1000, None), None);
    }

    #[test]
    fn sources_are_tried_in_order() {
        let creds = tempfile::tempdir().unwrap();
        let creds_dir = creds.path().to_string_lossy().into_owned();
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let l = locate(&env(&[(KEY_FILE_ENV, "/k"), ("HOME", "/h")]), 1000).unwrap();
        assert_eq!(
            (l.source, l.path),
            (KeySource::EnvFile, PathBuf::from("/k"))
        );

        let with_creds = |k: &str| match k {
            "CREDENTIALS_DIRECTORY" => Some(creds_dir.clone()),
            "HOME" => Some("/h".to_owned()),
            _ => None,
        };
        // An empty credentials directory falls through to the default file.
        let l = locate(&with_creds, 1000).unwrap();
        assert_eq!(l.source, KeySource::DefaultFile);
        assert_eq!(l.path, PathBuf::from("/h/.config/cambot/master.key"));
        assert_eq!(l.looked.len(), 3, "{:?}", l.looked);
        std::fs::write(creds.path().join(CREDENTIAL_NAME), [7u8; 32]).unwrap();
        let l = locate(&with_creds, 1000).unwrap();
        assert_eq!(l.source, KeySource::SystemdCredential);
        assert!(!l.writable());
    }

    #[test]
    fn key_files_are_hex_or_raw() {
        let hex_key = format!("{}\n", "ab".repeat(32));
        assert_eq!(
            parse_key(hex_key.as_bytes()).unwrap().as_slice(),
            &[0xab; 32]
        );
        assert_eq!(parse_key(&[9u8; 32]).unwrap().as_slice(), &[9u8; 32]);
        assert!(parse_key(b"short\n").is_none());
        assert!(parse_key("zz".repeat(32).as_bytes()).is_none());
    }

    fn location(path: &Path) -> KeyLocation {
        KeyLocation {
            source: KeySource::EnvFile,
            path: path.to_owned(),
            looked: vec![path.display().to_string()],
        }
    }

    #[test]
    fn the_loader_finishes_or_undoes_an_interrupted_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let loc = location(&dir.path().join("k/master.key"));
        let (old, new) = (seal::random_key(), seal::random_key());
        write_key_file(&loc.path, &old).unwrap();
        write_key_file(&loc.next_path(), &new).unwrap();

        // Not committed: the old key opens the check, the stale `.next` goes.
        let old_check = seal::make_check(&old).unwrap();
        let k = load(&loc, Some(&old_check), false, None).unwrap().unwrap();
        assert_eq!(k.bytes().as_slice(), old.as_slice());
        assert!(!loc.next_path().exists());

        // Committed: `.next` opens the check and replaces the key file.
        write_key_file(&loc.next_path(), &new).unwrap();
        let new_check = seal::make_check(&new).unwrap();
        let k = load(&loc, Some(&new_check), false, None).unwrap().unwrap();
        assert_eq!(k.bytes().as_slice(), new.as_slice());
        assert!(!loc.next_path().exists());
        assert_eq!(
            read_key_file(&loc.path).unwrap().unwrap().as_slice(),
            new.as_slice()
        );

        // Neither opens it: refused by path, nothing created or removed.
        let other = seal::make_check(&seal::random_key()).unwrap();
        let err = load(&loc, Some(&other), true, None).unwrap_err();
        assert!(matches!(err, VaultError::WrongKey { .. }), "{err}");
    }

    #[test]
    fn a_key_is_created_only_for_an_empty_vault_and_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let loc = location(&dir.path().join("new/master.key"));
        assert!(load(&loc, None, false, None).unwrap().is_none());
        assert!(!loc.path.exists());
        let check = seal::make_check(&seal::random_key()).unwrap();
        let err = load(&loc, Some(&check), true, None).unwrap_err();
        assert!(matches!(err, VaultError::NoKey { .. }), "{err}");
        assert!(!loc.path.exists());
        let created = load(&loc, None, true, None).unwrap().unwrap();
        assert_eq!(key_file_mode(&loc.path), Some(0o600));
        assert_eq!(key_file_mode(loc.path.parent().unwrap()), Some(0o700));
        let again = load(&loc, None, true, None).unwrap().unwrap();
        assert_eq!(created.bytes().as_slice(), again.bytes().as_slice());
    }
}

//! Files at rest: the data directory is the operator's alone (0700), the database and its
//! WAL and shared-memory files 0600 (SQLite gives `-wal`/`-shm` the database file's mode),
//! log files 0600 in a 0700 directory. Sandboxes reach their folders through bind mounts and
//! their run directories by ownership, never by traversing the data directory.
//!
//! [`secure_data_dir`] creates or tightens them at every start (daemon and CLI) and says what
//! it changed; [`doctor_lines`] reports them for `cambot doctor`.

use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;

use cambot_protocol::DataLayout;

/// Mode of the data directory and of every directory below it that holds only host state.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the database, its WAL and shared-memory files, and log files.
pub const FILE_MODE: u32 = 0o600;

/// A file or directory whose mode could not be set.
#[derive(Debug, thiserror::Error)]
pub enum AtRestError {
    #[error("cannot create the data directory {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot restrict {path} to mode {mode:04o}: {source}")]
    Mode {
        path: PathBuf,
        mode: u32,
        #[source]
        source: std::io::Error,
    },
}

/// One mode tightened at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeChange {
    pub path: PathBuf,
    pub from: u32,
    pub to: u32,
}

/// The database file and the two SQLite keeps beside it.
pub fn database_files(layout: &DataLayout) -> [PathBuf; 3] {
    let db = layout.database();
    let with = |suffix: &str| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    [with(""), with("-wal"), with("-shm")]
}

/// Every path kept private, with its wanted mode; those that do not exist are skipped.
fn private_paths(layout: &DataLayout) -> Vec<(PathBuf, u32)> {
    let mut paths = vec![(layout.root().to_owned(), DIR_MODE)];
    paths.extend(database_files(layout).map(|p| (p, FILE_MODE)));
    let logs = layout.logs_dir();
    if logs.is_dir() {
        paths.push((logs.clone(), DIR_MODE));
        if let Ok(entries) = std::fs::read_dir(&logs) {
            paths.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .map(|e| (e.path(), FILE_MODE)),
            );
        }
    }
    paths
}

/// Creates the data directory 0700 when missing, then removes every group and other
/// permission from it, the database files and the logs. Returns what changed (each also
/// logged at info).
pub fn secure_data_dir(layout: &DataLayout) -> Result<Vec<ModeChange>, AtRestError> {
    let root = layout.root();
    if !root.is_dir() {
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| AtRestError::Create {
                path: root.to_owned(),
                source,
            })?;
        }
        std::fs::DirBuilder::new()
            .mode(DIR_MODE)
            .create(root)
            .or_else(|e| match e.kind() {
                // Another process created it meanwhile: tightened below like any other.
                std::io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(e),
            })
            .map_err(|source| AtRestError::Create {
                path: root.to_owned(),
                source,
            })?;
    }
    let mut changes = Vec::new();
    for (path, wanted) in private_paths(layout) {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        let from = meta.mode() & 0o7777;
        let to = from & wanted;
        if to == from {
            continue;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(to)).map_err(|source| {
            AtRestError::Mode {
                path: path.clone(),
                mode: to,
                source,
            }
        })?;
        tracing::info!(
            path = %path.display(),
            from = %format!("{from:04o}"),
            to = %format!("{to:04o}"),
            "tightened the mode of a file at rest"
        );
        changes.push(ModeChange { path, from, to });
    }
    Ok(changes)
}

/// `cambot doctor`: the modes of the data directory and the database files, and the owner of
/// every live run directory and of the local model's socket directory. A mode looser than
/// wanted fails its line (it is tightened at the next start).
pub fn doctor_lines(layout: &DataLayout) -> Vec<(bool, String, String)> {
    let mut lines = Vec::new();
    let described = |path: &Path, wanted: u32| -> Option<(bool, String)> {
        let meta = std::fs::metadata(path).ok()?;
        let mode = meta.mode() & 0o7777;
        let loose = mode & !wanted != 0;
        let mut text = format!("{} {mode:04o} uid {}", path.display(), meta.uid());
        if loose {
            text.push_str(&format!(
                " (looser than {wanted:04o}: others may read it; cambot tightens it at start)"
            ));
        }
        Some((!loose, text))
    };
    if let Some((ok, text)) = described(layout.root(), DIR_MODE) {
        lines.push((ok, "data directory mode".to_owned(), text));
    }
    let files: Vec<(bool, String)> = database_files(layout)
        .iter()
        .filter_map(|p| described(p, FILE_MODE))
        .collect();
    if !files.is_empty() {
        lines.push((
            files.iter().all(|(ok, _)| *ok),
            "database file modes".to_owned(),
            files
                .into_iter()
                .map(|(_, t)| t)
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    let logs = layout.logs_dir();
    if let Some((ok, text)) = described(&logs, DIR_MODE) {
        lines.push((ok, "logs directory mode".to_owned(), text));
    }
    // Run directories belong to their run's uid, 0700: the sandbox user reaches its socket,
    // nobody else lists it. A root daemon hands each to a non-root run uid; any other daemon
    // runs its sandboxes as itself.
    let daemon_uid = std::fs::metadata(layout.root()).ok().map(|m| m.uid());
    let owned = |path: &Path| -> Option<(bool, String)> {
        let (ok, mut text) = described(path, DIR_MODE)?;
        let uid = std::fs::metadata(path).ok()?.uid();
        let right = match daemon_uid {
            Some(0) => uid != 0,
            Some(daemon) => uid == daemon,
            None => true,
        };
        if !right {
            text.push_str(" (not owned by its run's uid)");
        }
        Some((ok && right, text))
    };
    let mut runs: Vec<(bool, String)> = std::fs::read_dir(layout.runs_dir())
        .map(|d| d.flatten().filter_map(|e| owned(&e.path())).collect())
        .unwrap_or_default();
    runs.extend(owned(&layout.root().join("models")));
    lines.push(if runs.is_empty() {
        (true, "run directories".to_owned(), "none live".to_owned())
    } else {
        (
            runs.iter().all(|(ok, _)| *ok),
            "run directories".to_owned(),
            runs.into_iter()
                .map(|(_, t)| t)
                .collect::<Vec<_>>()
                .join(", "),
        )
    });
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    /// As root (the only case where run dirs change hands): a run dir still owned by root
    /// fails the line, one handed to a run uid passes.
    #[test]
    fn run_directories_must_belong_to_their_run_uid() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let layout = DataLayout::new(dir.path());
        secure_data_dir(&layout).unwrap();
        let run = layout.runs_dir().join("r1");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(DIR_MODE)).unwrap();
        let runs = |layout: &DataLayout| {
            doctor_lines(layout)
                .into_iter()
                .find(|l| l.1 == "run directories")
                .unwrap()
        };
        let line = runs(&layout);
        assert!(
            !line.0 && line.2.contains("not owned by its run's uid"),
            "{line:?}"
        );
        std::os::unix::fs::chown(&run, Some(1000), Some(1000)).unwrap();
        let line = runs(&layout);
        assert!(line.0 && line.2.contains("uid 1000"), "{line:?}");
    }

    #[test]
    fn a_fresh_data_dir_is_created_private() {
        let dir = tempfile::tempdir().unwrap();
        let layout = DataLayout::new(dir.path().join("a/b/data"));
        let changes = secure_data_dir(&layout).unwrap();
        assert_eq!(mode(layout.root()), DIR_MODE);
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn loose_modes_are_tightened_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let layout = DataLayout::new(dir.path());
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        set(dir.path(), 0o755);
        let [db, wal, shm] = database_files(&layout);
        for p in [&db, &wal] {
            std::fs::write(p, b"x").unwrap();
            set(p, 0o644);
        }
        std::fs::write(&shm, b"x").unwrap();
        set(&shm, 0o400);
        std::fs::create_dir(layout.logs_dir()).unwrap();
        set(&layout.logs_dir(), 0o755);
        let log = layout.logs_dir().join("cambot.log");
        std::fs::write(&log, b"x").unwrap();
        set(&log, 0o666);

        let lines = doctor_lines(&layout);
        assert!(!lines[0].0 && lines[0].2.contains("0755"), "{lines:?}");
        assert!(!lines[1].0 && lines[1].2.contains("0644"), "{lines:?}");

        let mut changed: Vec<_> = secure_data_dir(&layout)
            .unwrap()
            .into_iter()
            .map(|c| (c.path, c.from, c.to))
            .collect();
        changed.sort();
        let mut expected = vec![
            (dir.path().to_owned(), 0o755, 0o700),
            (db, 0o644, 0o600),
            (wal, 0o644, 0o600),
            (layout.logs_dir(), 0o755, 0o700),
            (log, 0o666, 0o600),
        ];
        expected.sort();
        assert_eq!(changed, expected);
        // Stricter than wanted is left alone.
        assert_eq!(mode(&shm), 0o400);
        assert!(doctor_lines(&layout).iter().all(|(ok, _, _)| *ok));
        assert!(secure_data_dir(&layout).unwrap().is_empty());
    }
}

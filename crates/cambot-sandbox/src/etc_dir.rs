//! The sandbox's generated `/etc` as one read-only directory bind instead of one
//! `--ro-bind-data` per file.
//!
//! Each `--ro-bind-data` costs bwrap a file on its tmpfs, a bind mount and a read-only remount
//! (which re-reads the mount table), and costs the daemon a memfd: six of them were ~1 ms of
//! every start. The files depend only on the plan's identity and network settings, so a few
//! distinct sets cover every run: each set is written once into a private directory (mode 0700,
//! owned by the daemon, removed with the backend) and reused read-only by every run that needs
//! it. Nothing the sandbox does can change it: it is bound read-only and lives outside every
//! writable mount.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::error::SandboxError;
use crate::plan::MountMode;
use crate::plan::PlanMount;
use crate::plan::RunPlan;

/// Where the generated `/etc` sets live, one directory per distinct content.
#[derive(Debug, Default)]
pub(crate) struct EtcDirs {
    state: Mutex<Option<State>>,
}

#[derive(Debug)]
struct State {
    root: tempfile::TempDir,
    made: HashMap<Vec<(String, String)>, PathBuf>,
    /// Names directories; never reused, so a rewritten set cannot collide with a live one.
    next_id: u64,
}

/// The file name of `path` when it sits directly in `/etc` (and is a plain name).
fn etc_file_name(path: &str) -> Option<&str> {
    let name = path.strip_prefix("/etc/")?;
    (!name.is_empty() && !name.contains('/') && name != "." && name != "..").then_some(name)
}

fn prepare_err(path: &Path) -> impl Fn(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Prepare {
        path: path.to_owned(),
        source,
    }
}

fn write_set(dir: &Path, files: &[(String, String)]) -> Result<(), SandboxError> {
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(dir)
        .map_err(prepare_err(dir))?;
    for (path, content) in files {
        let Some(name) = etc_file_name(path) else {
            continue;
        };
        let file = dir.join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&file)
            .map_err(prepare_err(&file))?;
        f.write_all(content.as_bytes())
            .map_err(prepare_err(&file))?;
    }
    Ok(())
}

impl EtcDirs {
    /// `plan` with its generated files moved into a read-only bind of a directory at `/etc`
    /// (first among the mounts). A plan with a file outside `/etc`, or without files, is
    /// returned unchanged.
    pub(crate) fn bind_into(&self, plan: &RunPlan) -> Result<RunPlan, SandboxError> {
        if plan.etc.is_empty() || plan.etc.iter().any(|(p, _)| etc_file_name(p).is_none()) {
            return Ok(plan.clone());
        }
        let dir = self.dir_for(&plan.etc)?;
        let mut bound = plan.clone();
        bound.etc.clear();
        bound.mounts.insert(
            0,
            PlanMount {
                src: dir,
                dst: "/etc".to_owned(),
                mode: MountMode::ReadOnly,
                optional: false,
                create: false,
            },
        );
        Ok(bound)
    }

    fn dir_for(&self, files: &[(String, String)]) -> Result<PathBuf, SandboxError> {
        // A panic mid-write leaves at most an unlisted directory: a set enters `made` only once
        // written, and `next_id` never reuses a name.
        let mut state = crate::locks::lock("sandbox /etc cache", &self.state);
        // A long-lived daemon's temp directory may be cleaned away (systemd-tmpfiles, tmpwatch):
        // then the set is written again, into a new root if the old one is gone too.
        if state.as_ref().is_some_and(|s| !s.root.path().is_dir()) {
            *state = None;
        }
        if state.is_none() {
            let root = tempfile::Builder::new()
                .prefix("cambot-etc-")
                .tempdir()
                .map_err(prepare_err(&std::env::temp_dir()))?;
            *state = Some(State {
                root,
                made: HashMap::new(),
                next_id: 0,
            });
        }
        let Some(state) = state.as_mut() else {
            return Err(SandboxError::Spawn("the /etc cache is missing".to_owned()));
        };
        if let Some(dir) = state.made.get(files).filter(|d| d.is_dir()) {
            return Ok(dir.clone());
        }
        let dir = state.root.path().join(state.next_id.to_string());
        state.next_id += 1;
        write_set(&dir, files)?;
        state.made.insert(files.to_vec(), dir.clone());
        Ok(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_directly_in_etc_qualify() {
        assert_eq!(etc_file_name("/etc/passwd"), Some("passwd"));
        assert_eq!(etc_file_name("/etc/ssl/certs"), None);
        assert_eq!(etc_file_name("/etc/.."), None);
        assert_eq!(etc_file_name("/etc/"), None);
        assert_eq!(etc_file_name("/opt/x"), None);
    }

    #[test]
    fn each_distinct_set_is_written_once_and_reused() {
        let dirs = EtcDirs::default();
        let a = vec![
            ("/etc/passwd".to_owned(), "a:x:1:1::/:/bin/sh\n".to_owned()),
            ("/etc/hostname".to_owned(), "cambot\n".to_owned()),
        ];
        let b = vec![("/etc/passwd".to_owned(), "b:x:2:2::/:/bin/sh\n".to_owned())];
        let da = dirs.dir_for(&a).expect("written");
        assert_eq!(dirs.dir_for(&a).expect("reused"), da);
        let db = dirs.dir_for(&b).expect("written");
        assert_ne!(da, db);
        assert_eq!(
            std::fs::read_to_string(da.join("passwd")).expect("file"),
            "a:x:1:1::/:/bin/sh\n"
        );
        assert_eq!(
            std::fs::read_to_string(db.join("passwd")).expect("file"),
            "b:x:2:2::/:/bin/sh\n"
        );
        let root = da.parent().expect("root").to_owned();
        std::fs::remove_dir_all(&root).expect("cleaned away");
        let again = dirs.dir_for(&a).expect("written again");
        assert_eq!(
            std::fs::read_to_string(again.join("hostname")).expect("file"),
            "cambot\n"
        );
        let root = again.parent().expect("root").to_owned();
        drop(dirs);
        assert!(!root.exists(), "removed with the backend");
    }
}

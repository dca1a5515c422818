//! Mount staging for a root daemon. bwrap runs as the sandbox uid (dropped before exec) and
//! resolves every source path with that uid, so a data dir under `/root` (mode 0700) would be
//! unreachable. Instead the child, still root, enters a private mount namespace, opens each
//! source (`O_PATH`, the final component never followed for data-dir paths), mounts a tmpfs on
//! `/tmp` and binds each opened source to `/tmp/<n>` through `/proc/self/fd/<fd>`. bwrap then
//! binds from `/tmp/<n>`. The staging mounts exist only in that child's namespace, so nothing
//! is left on the host. (The sources are opened after `unshare`: a bind from a descriptor of
//! another mount namespace is refused with `EINVAL`.)

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::fd::FromRawFd;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::error::SandboxError;
use crate::plan::RunPlan;

const STAGE_DIR: &str = "/tmp";

struct StageOp {
    source: CString,
    follow: bool,
    open_flags: libc::c_int,
    target: CString,
    is_dir: bool,
}

/// One staging mount as a launcher receives it (see [`crate::launch`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct StagedMount {
    pub source: Vec<u8>,
    /// Follow a final symlink (binaries under `/opt/cambot` only).
    pub follow: bool,
    pub target: Vec<u8>,
    pub is_dir: bool,
}

/// The mounts the child makes.
pub(crate) struct Stage {
    ops: Vec<StageOp>,
    /// `/proc/self/fd/` plus room for the number, filled in the child.
    proc_prefix: &'static [u8],
}

fn flags(follow: bool) -> libc::c_int {
    let mut flags = libc::O_PATH | libc::O_CLOEXEC;
    if !follow {
        flags |= libc::O_NOFOLLOW;
    }
    flags
}

fn open_source(path: &CString, flags: libc::c_int) -> std::io::Result<OwnedFd> {
    // SAFETY: a valid C string and flags; the result is checked.
    let raw = unsafe { libc::open(path.as_ptr(), flags) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

impl Stage {
    /// Opens the sources and rewrites the plan's mounts to the staged paths (missing optional
    /// sources are dropped from the plan; a missing required one is an error).
    pub(crate) fn prepare(plan: &RunPlan) -> Result<(RunPlan, Self), SandboxError> {
        let mut staged = plan.clone();
        staged.mounts.clear();
        let mut ops = Vec::new();
        for m in &plan.mounts {
            // Data-dir sources never follow a final symlink; the runner and the shim may be
            // links (installed binaries), which are the operator's, not the sandbox's.
            let follow = m.dst.starts_with("/opt/cambot/");
            let source = CString::new(m.src.as_os_str().as_bytes()).map_err(SandboxError::Nul)?;
            let fd = match open_source(&source, flags(follow)) {
                Ok(fd) => fd,
                Err(e) if m.optional && e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(SandboxError::Prepare {
                        path: m.src.clone(),
                        source,
                    });
                }
            };
            let meta =
                nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| SandboxError::Prepare {
                    path: m.src.clone(),
                    source: std::io::Error::from(e),
                })?;
            let is_dir = (meta.st_mode & libc::S_IFMT) == libc::S_IFDIR;
            let is_file = (meta.st_mode & libc::S_IFMT) == libc::S_IFREG;
            if !is_dir && !is_file {
                return Err(SandboxError::Prepare {
                    path: m.src.clone(),
                    source: std::io::Error::other("not a directory or a regular file"),
                });
            }
            let target = format!("{STAGE_DIR}/{}", ops.len());
            let c = |s: String| CString::new(s).map_err(SandboxError::Nul);
            ops.push(StageOp {
                source,
                follow,
                open_flags: flags(follow),
                target: c(target.clone())?,
                is_dir,
            });
            drop(fd);
            let mut sm = m.clone();
            sm.src = PathBuf::from(target);
            sm.optional = false;
            staged.mounts.push(sm);
        }
        Ok((
            staged,
            Self {
                ops,
                proc_prefix: b"/proc/self/fd/",
            },
        ))
    }

    /// The mounts, for a launcher.
    pub(crate) fn to_wire(&self) -> Vec<StagedMount> {
        self.ops
            .iter()
            .map(|op| StagedMount {
                source: op.source.as_bytes().to_vec(),
                follow: op.follow,
                target: op.target.as_bytes().to_vec(),
                is_dir: op.is_dir,
            })
            .collect()
    }

    /// The launcher's side of [`Self::to_wire`].
    pub(crate) fn from_wire(mounts: Vec<StagedMount>) -> Result<Self, SandboxError> {
        let c = |b: Vec<u8>| CString::new(b).map_err(SandboxError::Nul);
        let mut ops = Vec::with_capacity(mounts.len());
        for m in mounts {
            ops.push(StageOp {
                source: c(m.source)?,
                follow: m.follow,
                open_flags: flags(m.follow),
                target: c(m.target)?,
                is_dir: m.is_dir,
            });
        }
        Ok(Self {
            ops,
            proc_prefix: b"/proc/self/fd/",
        })
    }

    /// Runs in the child between fork and exec, as root, before the uid drop.
    ///
    /// # Safety
    /// Only raw syscalls on pre-built C strings; call it from `pre_exec` only.
    pub(crate) unsafe fn enter(&self) -> std::io::Result<()> {
        let err = std::io::Error::last_os_error;
        let null = std::ptr::null::<libc::c_char>();
        // SAFETY: plain syscalls with valid NUL-terminated strings prepared before fork.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(err());
            }
            if libc::mount(
                null,
                c"/".as_ptr(),
                null,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(err());
            }
            // Open before the tmpfs hides anything under /tmp; the descriptors belong to this
            // namespace now.
            let mut fds = [-1i32; 256];
            if self.ops.len() > fds.len() {
                return Err(std::io::Error::from_raw_os_error(libc::E2BIG));
            }
            for (i, op) in self.ops.iter().enumerate() {
                let fd = libc::open(op.source.as_ptr(), op.open_flags);
                if fd < 0 {
                    return Err(err());
                }
                fds[i] = fd;
            }
            if libc::mount(
                c"tmpfs".as_ptr(),
                c"/tmp".as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                c"mode=0755,size=65536".as_ptr().cast(),
            ) != 0
            {
                return Err(err());
            }
            for (i, op) in self.ops.iter().enumerate() {
                if op.is_dir {
                    if libc::mkdir(op.target.as_ptr(), 0o755) != 0 {
                        return Err(err());
                    }
                } else {
                    let fd = libc::open(
                        op.target.as_ptr(),
                        libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                        0o644,
                    );
                    if fd < 0 {
                        return Err(err());
                    }
                    libc::close(fd);
                }
                let mut proc_path = [0u8; 32];
                proc_path[..self.proc_prefix.len()].copy_from_slice(self.proc_prefix);
                write_decimal(&mut proc_path[self.proc_prefix.len()..], fds[i]);
                if libc::mount(
                    proc_path.as_ptr().cast(),
                    op.target.as_ptr(),
                    null,
                    libc::MS_BIND | libc::MS_REC,
                    std::ptr::null(),
                ) != 0
                {
                    return Err(err());
                }
                libc::close(fds[i]);
            }
        }
        Ok(())
    }
}

/// Writes `n` (non-negative) as decimal digits followed by NUL; no allocation (runs after fork).
fn write_decimal(out: &mut [u8], n: i32) {
    let mut digits = [0u8; 12];
    let mut len = 0;
    let mut v = n.max(0) as u32;
    loop {
        digits[len] = b'0' + (v % 10) as u8;
        len += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in 0..len.min(out.len().saturating_sub(1)) {
        out[i] = digits[len - 1 - i];
    }
    out[len.min(out.len() - 1)] = 0;
}

#[cfg(test)]
mod tests {
    #[test]
    fn decimal() {
        let mut b = [0xffu8; 8];
        super::write_decimal(&mut b, 1234);
        assert_eq!(&b[..5], b"1234\0");
        super::write_decimal(&mut b, 0);
        assert_eq!(&b[..2], b"0\0");
    }
}

//! `cambot image build`: the agent image, built locally with no registry. The rootfs is a tar of
//! the host pieces the runner and the shell tools need (each binary plus its `ldd` libraries,
//! symlinks kept as symlinks), the runner itself, a generated `/etc`, and the mount points; it
//! is imported through the API (`docker import`).

use std::collections::BTreeSet;
use std::path::Path;
use std::path::PathBuf;

use bollard::query_parameters::CreateImageOptions;
use futures::StreamExt;

use crate::docker::DockerBackend;
use crate::error::SandboxError;

/// Tools copied from the host when present (what agents, the escape suites and the document
/// extractor (`pdftotext`) use).
pub const IMAGE_TOOLS: &[&str] = &[
    "bash",
    "sh",
    "dash",
    "cat",
    "ls",
    "id",
    "touch",
    "mkdir",
    "dd",
    "stat",
    "head",
    "tail",
    "tr",
    "cut",
    "grep",
    "sort",
    "wc",
    "env",
    "sleep",
    "setsid",
    "nohup",
    "yes",
    "unshare",
    "getent",
    "rm",
    "cp",
    "mv",
    "true",
    "false",
    "echo",
    "printf",
    "test",
    "uname",
    "whoami",
    "readlink",
    "python3",
    "pdftotext",
];

/// What was built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReport {
    pub tag: String,
    pub id: String,
    pub rootfs_bytes: usize,
    pub files: usize,
}

struct Rootfs {
    tar: tar::Builder<Vec<u8>>,
    seen: BTreeSet<PathBuf>,
    files: usize,
}

/// `/lib/x` -> `/usr/lib/x` on merged-/usr hosts (the image recreates the top-level links).
fn usr_path(p: &Path) -> PathBuf {
    for top in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        let link = Path::new("/").join(top);
        if let Ok(rest) = p.strip_prefix(&link)
            && std::fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink())
        {
            return Path::new("/usr").join(top).join(rest);
        }
    }
    p.to_path_buf()
}

impl Rootfs {
    fn new() -> Self {
        Self {
            tar: tar::Builder::new(Vec::new()),
            seen: BTreeSet::new(),
            files: 0,
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(size);
        h.set_mtime(0);
        h
    }

    fn dir(&mut self, path: &Path, mode: u32) -> std::io::Result<()> {
        if path == Path::new("/") || !self.seen.insert(path.to_path_buf()) {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            self.dir(parent, 0o755)?;
        }
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.tar.append_data(&mut h, rel(path), std::io::empty())
    }

    fn data(&mut self, path: &Path, mode: u32, data: &[u8]) -> std::io::Result<()> {
        if !self.seen.insert(path.to_path_buf()) {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            self.dir(parent, 0o755)?;
        }
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.files += 1;
        self.tar.append_data(&mut h, rel(path), data)
    }

    fn symlink(&mut self, path: &Path, target: &Path) -> std::io::Result<()> {
        if !self.seen.insert(path.to_path_buf()) {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            self.dir(parent, 0o755)?;
        }
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.tar.append_link(&mut h, rel(path), target)
    }

    /// Copies a host path at the same place: symlinks stay symlinks (their targets follow),
    /// files are copied with their mode.
    fn host_path(&mut self, path: &Path, depth: usize) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let path = usr_path(path);
        if depth > 16 || self.seen.contains(&path) {
            return Ok(());
        }
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path)?;
            self.symlink(&path, &target)?;
            let abs = match path.parent() {
                Some(parent) if target.is_relative() => parent.join(&target),
                _ => target,
            };
            return self.host_path(&normalize(&abs), depth + 1);
        }
        if meta.is_dir() {
            self.dir(&path, meta.permissions().mode() & 0o7777)?;
            for entry in std::fs::read_dir(&path)? {
                let entry = entry?;
                let name = entry.file_name();
                if name == "__pycache__" || name == "test" || name == "tests" {
                    continue;
                }
                self.host_path(&entry.path(), depth)?;
            }
            return Ok(());
        }
        if meta.is_file() {
            let data = std::fs::read(&path)?;
            return self.data(&path, meta.permissions().mode() & 0o7777, &data);
        }
        Ok(())
    }

    /// The binary and every library `ldd` lists for it.
    fn binary(&mut self, path: &Path) -> std::io::Result<()> {
        self.host_path(path, 0)?;
        for lib in ldd(path) {
            self.host_path(&lib, 0)?;
        }
        Ok(())
    }
}

fn rel(p: &Path) -> PathBuf {
    p.strip_prefix("/").unwrap_or(p).to_path_buf()
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

fn ldd(path: &Path) -> Vec<PathBuf> {
    let Ok(out) = std::process::Command::new("ldd").arg(path).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let p = match l.split_once("=>") {
                Some((_, rhs)) => rhs.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            p.starts_with('/').then(|| PathBuf::from(p))
        })
        .collect()
}

fn find_tool(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// Builds the rootfs tar (blocking: reads host files).
pub fn rootfs_tar(
    runner: Option<&Path>,
    uid: u32,
    gid: u32,
) -> Result<(Vec<u8>, usize), SandboxError> {
    let mut fs = Rootfs::new();
    let io = |source| SandboxError::SpawnStep {
        step: "building the image rootfs",
        source,
    };
    for entry in crate::plan::HostFs::detect().entries {
        if let crate::plan::SystemEntry::Symlink { path, target } = entry {
            fs.symlink(Path::new(&path), Path::new(&target))
                .map_err(io)?;
        }
    }
    for tool in IMAGE_TOOLS {
        if let Some(p) = find_tool(tool) {
            fs.binary(&p).map_err(io)?;
        }
    }
    if let Ok(real) = std::fs::canonicalize("/usr/bin/python3")
        && let Some(name) = real.file_name().and_then(|n| n.to_str())
    {
        let stdlib = Path::new("/usr/lib").join(name);
        if stdlib.is_dir() {
            fs.host_path(&stdlib, 0).map_err(io)?;
            // Extension modules link their own libraries.
            if let Ok(dir) = std::fs::read_dir(stdlib.join("lib-dynload")) {
                for e in dir.flatten() {
                    for lib in ldd(&e.path()) {
                        fs.host_path(&lib, 0).map_err(io)?;
                    }
                }
            }
        }
    }
    if let Some(r) = runner {
        let data = std::fs::read(r).map_err(io)?;
        fs.data(
            Path::new(cambot_protocol::layout::sandbox_paths::RUNNER_BIN),
            0o755,
            &data,
        )
        .map_err(io)?;
        for lib in ldd(r) {
            fs.host_path(&lib, 0).map_err(io)?;
        }
    }
    let etc = [
        (
            "/etc/passwd",
            format!(
                "root:x:0:0:root:/root:/usr/sbin/nologin\ncambot:x:{uid}:{gid}:cambot:/workspace/group:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
            ),
        ),
        (
            "/etc/group",
            format!("root:x:0:\ncambot:x:{gid}:\nnogroup:x:65534:\n"),
        ),
        (
            "/etc/nsswitch.conf",
            "passwd: files\ngroup: files\nhosts: files\n".to_owned(),
        ),
        (
            "/etc/hosts",
            "127.0.0.1\tlocalhost\n::1\tlocalhost\n".to_owned(),
        ),
        (
            "/etc/resolv.conf",
            "# no network in this sandbox\n".to_owned(),
        ),
    ];
    for (p, c) in etc {
        fs.data(Path::new(p), 0o644, c.as_bytes()).map_err(io)?;
    }
    for d in [
        "/workspace/group",
        "/workspace/global",
        "/workspace/session",
        "/workspace/uploads",
        "/workspace/extra",
        "/run/cambot",
        "/opt/cambot",
        "/dev",
        "/proc",
        "/sys",
        "/root",
    ] {
        fs.dir(Path::new(d), 0o755).map_err(io)?;
    }
    fs.dir(Path::new("/tmp"), 0o1777).map_err(io)?;
    let files = fs.files;
    let tar = fs.tar.into_inner().map_err(io)?;
    Ok((tar, files))
}

/// Builds and imports the image `backend.config().docker_image`.
pub async fn build_image(
    backend: &DockerBackend,
    runner: Option<&Path>,
) -> Result<ImageReport, SandboxError> {
    let cfg = backend.config().clone();
    let runner_owned = runner.map(Path::to_path_buf);
    let (tar, files) = tokio::task::spawn_blocking(move || {
        rootfs_tar(runner_owned.as_deref(), cfg.sandbox_uid, cfg.sandbox_gid)
    })
    .await
    .map_err(SandboxError::Blocking)??;
    let image = &backend.config().docker_image;
    let (repo, tag) = image.rsplit_once(':').unwrap_or((image.as_str(), "latest"));
    let cmd = if runner.is_some() {
        format!(
            "CMD [\"{}\"]",
            cambot_protocol::layout::sandbox_paths::RUNNER_BIN
        )
    } else {
        "CMD [\"/bin/sh\"]".to_owned()
    };
    let rootfs_bytes = tar.len();
    let mut stream = backend.client().create_image(
        Some(CreateImageOptions {
            from_src: Some("-".to_owned()),
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
            changes: vec![
                format!(
                    "USER {}:{}",
                    backend.config().sandbox_uid,
                    backend.config().sandbox_gid
                ),
                "WORKDIR /workspace/group".to_owned(),
                cmd,
            ],
            ..Default::default()
        }),
        Some(bollard::body_full(bytes::Bytes::from(tar))),
        None,
    );
    let mut id = String::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(SandboxError::DockerApi)?;
        if let Some(s) = info.status {
            id = s;
        }
    }
    Ok(ImageReport {
        tag: image.clone(),
        id: id.trim().to_owned(),
        rootfs_bytes,
        files,
    })
}

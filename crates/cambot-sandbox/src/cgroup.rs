//! Per-run cgroups under the daemon's own cgroup (v1 or v2), written by hand. The sandbox joins
//! them from `pre_exec` (writing `0` to each `cgroup.procs`), so every process it forks is
//! inside before it can run a single instruction of the command.

use std::fs::File;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::path::PathBuf;

use crate::plan::Limits;

const ROOT: &str = "/sys/fs/cgroup";
/// How old an empty run cgroup must be before start-up treats it as left over.
const LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(60);

/// Which cgroup hierarchy holds the controllers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CgroupMode {
    /// v1 controller name -> the daemon's path in it.
    V1(Vec<(String, PathBuf)>),
    /// The v2 mount point plus the daemon's path.
    V2(PathBuf),
    None(String),
}

/// Reads `/proc/self/cgroup` and the mounts to find where limits can be set.
pub(crate) fn detect() -> CgroupMode {
    let Ok(text) = std::fs::read_to_string("/proc/self/cgroup") else {
        return CgroupMode::None("/proc/self/cgroup is unreadable".to_owned());
    };
    let mut v1 = Vec::new();
    let mut v2_path = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => continue,
        };
        let rel = PathBuf::from(path.trim_start_matches('/'));
        if ctrls.is_empty() {
            v2_path = Some(rel);
            continue;
        }
        for c in ctrls.split(',') {
            if matches!(c, "memory" | "pids" | "cpu") && Path::new(ROOT).join(c).join(&rel).is_dir()
            {
                v1.push((c.to_owned(), Path::new(ROOT).join(c).join(&rel)));
            }
        }
    }
    if v1.iter().any(|(c, _)| c == "memory") && v1.iter().any(|(c, _)| c == "pids") {
        return CgroupMode::V1(v1);
    }
    if let Some(rel) = v2_path {
        for mount in [ROOT.to_owned(), format!("{ROOT}/unified")] {
            let dir = Path::new(&mount).join(&rel);
            let ctrls = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
            if ctrls.split_whitespace().any(|c| c == "memory")
                && ctrls.split_whitespace().any(|c| c == "pids")
            {
                return CgroupMode::V2(dir);
            }
        }
    }
    CgroupMode::None("no memory and pids controllers are available".to_owned())
}

/// Which spare cgroups a job starts from.
#[derive(Debug, Default)]
pub(crate) enum Spare {
    /// None: `mkdir` them.
    #[default]
    None,
    /// Empty ones made in advance.
    Empty(Vec<PathBuf>),
    /// Ones a warm launcher already sits in: never replaced, only renamed when the hierarchy
    /// allows it (cgroup v2 does not rename; the job then keeps the spare's name).
    Occupied(Vec<PathBuf>),
}

impl Spare {
    fn get(&self, i: usize) -> Option<(&PathBuf, bool)> {
        match self {
            Spare::None => None,
            Spare::Empty(d) => d.get(i).map(|p| (p, false)),
            Spare::Occupied(d) => d.get(i).map(|p| (p, true)),
        }
    }
}

fn obtain(base: &Path, leaf: &str, spare: Option<(&PathBuf, bool)>) -> std::io::Result<PathBuf> {
    let dir = base.join(leaf);
    if let Some((s, occupied)) = spare {
        if std::fs::rename(s, &dir).is_ok() {
            return Ok(dir);
        }
        if occupied {
            return Ok(s.clone());
        }
        let _ = std::fs::remove_dir(s);
    }
    std::fs::create_dir(&dir)?;
    Ok(dir)
}

/// Empty cgroups made ahead of time, off the start path.
#[derive(Debug)]
pub(crate) struct CgroupPool {
    mode: CgroupMode,
    spares: std::sync::Mutex<Vec<Vec<PathBuf>>>,
}

impl CgroupPool {
    pub(crate) const SIZE: usize = 2;

    pub(crate) fn new(mode: CgroupMode) -> Self {
        let pool = Self {
            mode,
            spares: std::sync::Mutex::new(Vec::new()),
        };
        pool.sweep_leftovers();
        pool
    }

    /// What a daemon killed without its `Drop` (SIGKILL) left behind: its spares, and the job
    /// cgroups of the runs it had (their processes died with it: `--die-with-parent`). A job
    /// cgroup is removed only when it is empty and older than [`LEFTOVER_AGE`], so the live
    /// runs of another daemon sharing this cgroup (empty only for the instant between `mkdir`
    /// and the child joining) are never touched; the kernel refuses to remove a non-empty one
    /// anyway. Returns how many directories were removed.
    pub(crate) fn sweep_leftovers(&self) -> usize {
        let mut removed = 0;
        for base in self.bases() {
            let Ok(entries) = std::fs::read_dir(&base) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let leftover = if let Some(rest) = name.strip_prefix("cambot-spare-") {
                    rest.split('-')
                        .next()
                        .and_then(|p| p.parse::<i32>().ok())
                        .is_some_and(|pid| {
                            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err()
                        })
                } else if name.strip_prefix("cambot-").is_some_and(|run| {
                    run.len() == 32 && run.bytes().all(|b| b.is_ascii_hexdigit())
                }) {
                    // `cambot-<run id>`: a run's cgroup.
                    let old = e
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age >= LEFTOVER_AGE);
                    let empty = std::fs::read_to_string(e.path().join("cgroup.procs"))
                        .is_ok_and(|procs| procs.trim().is_empty());
                    old && empty
                } else {
                    false
                };
                if leftover && std::fs::remove_dir(e.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        if removed > 0 {
            tracing::info!(
                removed,
                "removed cgroups left by an earlier cambot that was killed"
            );
        }
        removed
    }

    pub(crate) fn mode(&self) -> &CgroupMode {
        &self.mode
    }

    pub(crate) fn take(&self, name: &str, limits: &Limits) -> Option<JobCgroup> {
        let spare = crate::locks::lock("spare cgroups", &self.spares).pop();
        JobCgroup::create(
            &self.mode,
            name,
            limits,
            spare.map_or(Spare::None, Spare::Empty),
        )
    }

    /// The job cgroups of a run whose warm launcher sits in `dirs` (see [`crate::launch`]).
    pub(crate) fn take_occupied(
        &self,
        name: &str,
        limits: &Limits,
        dirs: Vec<PathBuf>,
    ) -> Option<JobCgroup> {
        JobCgroup::create(&self.mode, name, limits, Spare::Occupied(dirs))
    }

    /// A fresh set of spare cgroups (one per controller), or `None` without cgroups.
    fn make_spare(&self) -> Option<Vec<PathBuf>> {
        let bases = self.bases();
        if bases.is_empty() {
            return None;
        }
        // One counter per process, not per pool: two backends in one process (doctor, the
        // tests) must never make, rename or remove each other's spares.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("cambot-spare-{}-{n}", std::process::id());
        let mut dirs = Vec::new();
        for b in &bases {
            let d = b.join(&name);
            if std::fs::create_dir(&d).is_err() {
                for made in &dirs {
                    let _ = std::fs::remove_dir(made);
                }
                return None;
            }
            dirs.push(d);
        }
        Some(dirs)
    }

    /// A fresh set of spare cgroups for a warm launcher; empty without cgroups.
    pub(crate) fn make_launcher_spare(&self) -> std::io::Result<Vec<PathBuf>> {
        if self.bases().is_empty() {
            return Ok(Vec::new());
        }
        self.make_spare()
            .ok_or_else(|| std::io::Error::other("cannot create spare cgroups"))
    }

    /// Moves `pid` into each of `dirs` (blocking: on a default host a move may wait for an RCU
    /// grace period). On failure the caller still owns `dirs`, some of which may hold `pid`.
    pub(crate) fn join(dirs: &[PathBuf], pid: u32) -> std::io::Result<()> {
        for d in dirs {
            write(d, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    fn bases(&self) -> Vec<PathBuf> {
        match &self.mode {
            CgroupMode::V1(ctrls) => ctrls.iter().map(|(_, p)| p.clone()).collect(),
            CgroupMode::V2(base) => vec![base.clone()],
            CgroupMode::None(_) => Vec::new(),
        }
    }

    /// Tops the pool up (blocking; run it off the async threads).
    pub(crate) fn refill(&self) {
        if self.bases().is_empty() {
            return;
        }
        loop {
            if crate::locks::lock("spare cgroups", &self.spares).len() >= Self::SIZE {
                return;
            }
            let Some(dirs) = self.make_spare() else {
                return;
            };
            crate::locks::lock("spare cgroups", &self.spares).push(dirs);
        }
    }
}

impl Drop for CgroupPool {
    fn drop(&mut self) {
        for d in crate::locks::lock("spare cgroups", &self.spares)
            .drain(..)
            .flatten()
        {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// One run's cgroups. Removed (after killing what is left) by [`JobCgroup::destroy`].
#[derive(Debug)]
pub(crate) struct JobCgroup {
    dirs: Vec<PathBuf>,
    v2: bool,
    /// Open `cgroup.procs` handles the child writes `0` into.
    procs: Vec<File>,
    /// Every limit (memory, pids, cpu) is enforced.
    pub(crate) complete: bool,
}

fn write(dir: &Path, file: &str, value: &str) -> std::io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(dir.join(file))?;
    f.write_all(value.as_bytes())
}

fn cpu_quota(cpus: f64, period: u64) -> u64 {
    ((cpus * period as f64).round() as u64).max(1000)
}

impl JobCgroup {
    /// Creates `cambot-<name>` under the daemon's cgroup and writes the limits. `None` when
    /// this process has no rights (the caller falls back to rlimits).
    /// `spare`: directories made in advance (one per controller, in `mode`'s order), renamed
    /// to the job's name: `mkdir` of a cgroup costs milliseconds, a rename does not.
    pub(crate) fn create(
        mode: &CgroupMode,
        name: &str,
        limits: &Limits,
        spare: Spare,
    ) -> Option<Self> {
        let leaf = format!("cambot-{name}");
        let mut job = Self {
            dirs: Vec::new(),
            v2: false,
            procs: Vec::new(),
            complete: true,
        };
        match mode {
            CgroupMode::None(_) => return None,
            CgroupMode::V1(ctrls) => {
                for (i, (ctrl, base)) in ctrls.iter().enumerate() {
                    let Ok(dir) = obtain(base, &leaf, spare.get(i)) else {
                        job.complete = false;
                        continue;
                    };
                    job.dirs.push(dir.clone());
                    let ok = match ctrl.as_str() {
                        "memory" => {
                            let m = limits.memory_bytes.to_string();
                            let r = write(&dir, "memory.limit_in_bytes", &m);
                            // Absent without swap accounting; the plain limit still holds.
                            let _ = write(&dir, "memory.memsw.limit_in_bytes", &m);
                            r.is_ok()
                        }
                        "pids" => write(&dir, "pids.max", &limits.pids.to_string()).is_ok(),
                        "cpu" => {
                            write(&dir, "cpu.cfs_period_us", "100000").is_ok()
                                && write(
                                    &dir,
                                    "cpu.cfs_quota_us",
                                    &cpu_quota(limits.cpus, 100_000).to_string(),
                                )
                                .is_ok()
                        }
                        _ => true,
                    };
                    job.complete &= ok;
                    match OpenOptions::new()
                        .write(true)
                        .open(dir.join("cgroup.procs"))
                    {
                        Ok(f) => job.procs.push(f),
                        Err(_) => job.complete = false,
                    }
                }
                let have = |c: &str| ctrls.iter().any(|(n, _)| n == c);
                job.complete &= have("memory") && have("pids") && have("cpu");
            }
            CgroupMode::V2(base) => {
                job.v2 = true;
                // Controllers must be enabled for children; this fails when the daemon's own
                // cgroup holds processes and is not the root (no internal processes rule).
                let _ = write(base, "cgroup.subtree_control", "+memory +pids +cpu");
                let dir = obtain(base, &leaf, spare.get(0)).ok()?;
                job.dirs.push(dir.clone());
                let m = limits.memory_bytes.to_string();
                job.complete &= write(&dir, "memory.max", &m).is_ok();
                let _ = write(&dir, "memory.swap.max", "0");
                job.complete &= write(&dir, "pids.max", &limits.pids.to_string()).is_ok();
                job.complete &= write(
                    &dir,
                    "cpu.max",
                    &format!("{} 100000", cpu_quota(limits.cpus, 100_000)),
                )
                .is_ok();
                match OpenOptions::new()
                    .write(true)
                    .open(dir.join("cgroup.procs"))
                {
                    Ok(f) => job.procs.push(f),
                    Err(_) => job.complete = false,
                }
            }
        }
        if job.procs.is_empty() {
            job.destroy();
            return None;
        }
        Some(job)
    }

    /// Descriptors of the `cgroup.procs` files, for the child to join.
    pub(crate) fn procs_fds(&self) -> Vec<i32> {
        use std::os::fd::AsRawFd;
        self.procs.iter().map(AsRawFd::as_raw_fd).collect()
    }

    fn pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for d in &self.dirs {
            if let Ok(t) = std::fs::read_to_string(d.join("cgroup.procs")) {
                out.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// SIGKILLs every process in the job; returns how many were left before the kill.
    pub(crate) fn kill_all(&self) -> usize {
        if self.v2
            && let Some(d) = self.dirs.first()
            && write(d, "cgroup.kill", "1").is_ok()
        {
            return self.pids().len();
        }
        let pids = self.pids();
        for pid in &pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        pids.len()
    }

    /// How many processes the memory limit killed (v1 `memory.oom_control`, v2
    /// `memory.events`).
    pub(crate) fn oom_kills(&self) -> u64 {
        for d in &self.dirs {
            for file in ["memory.oom_control", "memory.events"] {
                if let Ok(t) = std::fs::read_to_string(d.join(file))
                    && let Some(n) = t
                        .lines()
                        .find_map(|l| l.strip_prefix("oom_kill "))
                        .and_then(|v| v.trim().parse().ok())
                {
                    return n;
                }
            }
        }
        0
    }

    /// Whether any process is still in the job.
    pub(crate) fn is_empty(&self) -> bool {
        self.pids().is_empty()
    }

    /// Kills what is left and removes the directories (retrying while processes exit).
    pub(crate) fn destroy(&mut self) {
        self.procs.clear();
        for _ in 0..200 {
            if self.is_empty() {
                break;
            }
            self.kill_all();
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        for d in self.dirs.drain(..) {
            if let Err(e) = std::fs::remove_dir(&d) {
                tracing::warn!(dir = %d.display(), error = %e, "could not remove a run cgroup");
            }
        }
    }
}

impl Drop for JobCgroup {
    fn drop(&mut self) {
        if !self.dirs.is_empty() {
            self.destroy();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spare_names(pool: &CgroupPool) -> Vec<String> {
        pool.spares
            .lock()
            .unwrap()
            .iter()
            .flatten()
            .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn two_pools_in_one_process_never_share_a_spare() {
        // `mkdir` is all a spare needs, so a plain directory stands in for the cgroup.
        let base = tempfile::tempdir().unwrap();
        let a = CgroupPool::new(CgroupMode::V2(base.path().to_path_buf()));
        let b = CgroupPool::new(CgroupMode::V2(base.path().to_path_buf()));
        a.refill();
        b.refill();
        let (na, nb) = (spare_names(&a), spare_names(&b));
        assert_eq!(na.len(), CgroupPool::SIZE);
        assert_eq!(nb.len(), CgroupPool::SIZE, "{na:?} {nb:?}");
        assert!(na.iter().all(|n| !nb.contains(n)), "{na:?} {nb:?}");
        drop(a);
        assert_eq!(spare_names(&b), nb);
        assert!(nb.iter().all(|n| base.path().join(n).is_dir()));
    }
}

//! Host capability probes for `cambot doctor` and the backends' reports.

/// The Landlock ABI version, `None` when the kernel has no Landlock (or it is disabled).
pub fn landlock_abi() -> Option<i32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the version query takes no pointer (NULL attr, size 0) and only returns an int.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    (v > 0).then_some(v as i32)
}

/// Whether seccomp filters are available (the `Seccomp` line exists in `/proc/self/status`).
pub fn seccomp_supported() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Seccomp:")))
        .unwrap_or(false)
}

/// `user.max_user_namespaces`, when readable.
pub fn max_user_namespaces() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// A one-line description of where cgroup limits would go, with the start-up cost of moving a
/// run into them.
pub fn cgroup_summary() -> String {
    let where_ = match crate::cgroup::detect() {
        crate::cgroup::CgroupMode::V1(c) => format!(
            "v1 ({})",
            c.iter()
                .map(|(n, p)| format!("{n}:{}", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        crate::cgroup::CgroupMode::V2(p) => format!("v2 ({})", p.display()),
        crate::cgroup::CgroupMode::None(why) => return format!("none: {why}"),
    };
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    match favordynmods(&mounts) {
        Some((_, true)) => {
            format!("{where_}; favordynmods on: moving a run into its cgroups is quick")
        }
        Some((mount, false)) => format!(
            "{where_}; moving a process into a cgroup waits for an RCU grace period (~7-15 ms \
             when moves are over ~10 ms apart): warm launchers make that move before a run \
             starts; without them each start waits, unless `mount -o remount,favordynmods \
             {mount}` (Linux >= 6.1) removes the wait"
        ),
        None => where_,
    }
}

/// The first cgroup2 mount in a `/proc/self/mounts` text and whether it has `favordynmods`: the
/// kernel then keeps the cgroup threadgroup lock ready for writers, so moving a process into a
/// cgroup (every sandbox start) no longer waits for an RCU grace period. Measured on this VM:
/// 7-15 ms per move without it, 0.1 ms with it.
fn favordynmods(mounts: &str) -> Option<(String, bool)> {
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, mount, fstype, options) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        (fstype == "cgroup2").then(|| {
            (
                mount.to_owned(),
                options.split(',').any(|o| o == "favordynmods"),
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::favordynmods;

    #[test]
    fn favordynmods_is_read_from_the_cgroup2_mount_options() {
        let hybrid = "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n\
                      cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";
        assert_eq!(
            favordynmods(hybrid),
            Some(("/sys/fs/cgroup/unified".to_owned(), false))
        );
        let tuned = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,favordynmods 0 0\n";
        assert_eq!(
            favordynmods(tuned),
            Some(("/sys/fs/cgroup".to_owned(), true))
        );
        assert_eq!(favordynmods("proc /proc proc rw 0 0\n"), None);
    }
}

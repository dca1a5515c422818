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

/// A one-line description of where cgroup limits would go.
pub fn cgroup_summary() -> String {
    match crate::cgroup::detect() {
        crate::cgroup::CgroupMode::V1(c) => format!(
            "v1 ({})",
            c.iter()
                .map(|(n, p)| format!("{n}:{}", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        crate::cgroup::CgroupMode::V2(p) => format!("v2 ({})", p.display()),
        crate::cgroup::CgroupMode::None(why) => format!("none: {why}"),
    }
}

//! The seccomp filters bwrap installs right before exec'ing the command (`--add-seccomp-fd`).
//! Defence in depth under the namespaces: no tracing, no taking another process's descriptors
//! or memory, no kernel keyrings, no BPF, no mounts, no new namespaces, no io_uring (it
//! bypasses the syscall filter), and, for offline runs, no socket family other than `AF_UNIX`.

use std::collections::BTreeMap;

use seccompiler::BackendError;
use seccompiler::BpfProgram;
use seccompiler::SeccompAction;
use seccompiler::SeccompCmpArgLen;
use seccompiler::SeccompCmpOp;
use seccompiler::SeccompCondition;
use seccompiler::SeccompFilter;
use seccompiler::SeccompRule;
use seccompiler::TargetArch;

/// Refused with `EPERM` unconditionally.
const DENIED: &[i64] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    // Takes a copy of another process's descriptor (a runner's stdout) under the same
    // ptrace-class check only: a wall of its own besides non-dumpable and Landlock.
    libc::SYS_pidfd_getfd,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_userfaultfd,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_open_by_handle_at,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_acct,
    libc::SYS_syslog,
];

const NS_FLAGS: &[u64] = &[
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWCGROUP as u64,
];

fn arch() -> Result<TargetArch, BackendError> {
    TargetArch::try_from(std::env::consts::ARCH)
}

fn cond(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, BackendError> {
    SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value)
}

fn to_bytes(prog: &BpfProgram) -> Vec<u8> {
    let mut out = Vec::with_capacity(prog.len() * 8);
    for ins in prog {
        out.extend_from_slice(&ins.code.to_ne_bytes());
        out.push(ins.jt);
        out.push(ins.jf);
        out.extend_from_slice(&ins.k.to_ne_bytes());
    }
    out
}

/// The compiled programs, in the raw `struct sock_filter` layout bwrap reads.
pub fn programs(offline: bool) -> Result<Vec<Vec<u8>>, BackendError> {
    let arch = arch()?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in DENIED {
        rules.insert(*nr, Vec::new());
    }
    let mut clone_rules = Vec::new();
    for flag in NS_FLAGS {
        clone_rules.push(SeccompRule::new(vec![cond(
            0,
            SeccompCmpOp::MaskedEq(*flag),
            *flag,
        )?])?);
    }
    rules.insert(libc::SYS_clone, clone_rules);
    if offline {
        let rule = SeccompRule::new(vec![cond(0, SeccompCmpOp::Ne, libc::AF_UNIX as u64)?])?;
        rules.insert(libc::SYS_socket, vec![rule]);
    }
    let eperm = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )?;
    // clone3 passes its flags in memory, which seccomp cannot read: ENOSYS makes libc fall back
    // to clone(2), whose flags the first filter checks.
    let mut enosys_rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    enosys_rules.insert(libc::SYS_clone3, Vec::new());
    let enosys = SeccompFilter::new(
        enosys_rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;
    let mut out = Vec::new();
    for f in [eperm, enosys] {
        let prog = BpfProgram::try_from(f)?;
        out.push(to_bytes(&prog));
    }
    out.extend(abi_guard());
    Ok(out)
}

/// `AUDIT_ARCH_X86_64` (`EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`).
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// Set in the number of every x32 system call, which carries the x86_64 arch value.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// `offsetof(struct seccomp_data, nr)` and `offsetof(struct seccomp_data, arch)`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

/// One classic-BPF instruction in the `struct sock_filter` layout.
fn insn(code: u16, jt: u8, jf: u8, k: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..2].copy_from_slice(&code.to_ne_bytes());
    b[2] = jt;
    b[3] = jf;
    b[4..].copy_from_slice(&k.to_ne_bytes());
    b
}

/// The x32 ABI guard: seccompiler matches numbers exactly, so `nr | 0x40000000` (x32, same
/// arch value) would slip past every rule above. Any other arch (i386 through `int 0x80`)
/// kills the process; an x32 number gets `EPERM`, which tells it apart from the `ENOSYS` of a
/// kernel built without x32.
#[cfg(target_arch = "x86_64")]
pub fn abi_guard() -> Option<Vec<u8>> {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let prog = [
        insn(LD_W_ABS, 0, 0, DATA_ARCH),
        insn(JEQ_K, 1, 0, AUDIT_ARCH_X86_64),
        insn(RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
        insn(LD_W_ABS, 0, 0, DATA_NR),
        insn(JGE_K, 0, 1, X32_SYSCALL_BIT),
        insn(
            RET_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA),
        ),
        insn(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    Some(prog.concat())
}

/// Other architectures have no second ABI sharing their arch value.
#[cfg(not(target_arch = "x86_64"))]
pub fn abi_guard() -> Option<Vec<u8>> {
    None
}

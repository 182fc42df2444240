//! seccomp: the syscall deny list, compiled to BPF in the parent and installed in the child
//! as the very last step before `execve`.
//!
//! Two filters are installed:
//! * the **guard**, written by hand below: it kills any call made with a foreign architecture
//!   (32-bit `int 0x80` on x86_64), answers x32 syscall numbers and `clone3` with ENOSYS
//!   (`clone3` passes its flags in memory seccomp cannot read; libc then falls back to
//!   `clone`, whose flags the deny list checks);
//! * the **deny list** from the policy, compiled by seccompiler, where every call not listed
//!   is allowed. Calls without argument checks stay in the kernel's per-filter action cache.

use std::collections::BTreeMap;

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

use crate::policy::{ArgCondition, SyscallPolicy};
use crate::profile::SyscallAction;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp does not support this architecture ({0})")]
    Arch(&'static str),
    #[error("cannot compile the deny list for `{syscall}`: {source}")]
    Rule {
        syscall: String,
        source: seccompiler::BackendError,
    },
    #[error("cannot compile the seccomp filter: {0}")]
    Compile(#[source] seccompiler::BackendError),
    #[error("cannot install the seccomp filter: {0}")]
    Install(#[source] seccompiler::Error),
}

/// The compiled filters, ready to install.
#[derive(Debug, Clone)]
pub struct Filters {
    guard: BpfProgram,
    deny: Option<BpfProgram>,
}

impl Filters {
    /// Number of BPF instructions, for diagnostics and benchmarks.
    pub fn len(&self) -> usize {
        self.guard.len() + self.deny.as_ref().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The programs in install order, as the kernel's `struct sock_filter` arrays (8 bytes
    /// an instruction, native endian): what another sandbox tool can load for comparison.
    pub fn programs(&self) -> Vec<Vec<u8>> {
        std::iter::once(&self.guard)
            .chain(self.deny.as_ref())
            .map(|prog| {
                prog.iter()
                    .flat_map(|i| {
                        let mut b = Vec::with_capacity(8);
                        b.extend_from_slice(&i.code.to_ne_bytes());
                        b.push(i.jt);
                        b.push(i.jf);
                        b.extend_from_slice(&i.k.to_ne_bytes());
                        b
                    })
                    .collect()
            })
            .collect()
    }
}

/// What a denied call returns under `action = "errno"`.
pub const DENY_ERRNO: i32 = libc::EPERM;

/// Compiles the policy's deny list and the guard filter.
pub fn compile(policy: &SyscallPolicy) -> Result<Filters, SeccompError> {
    let arch: TargetArch = std::env::consts::ARCH
        .try_into()
        .map_err(|_| SeccompError::Arch(std::env::consts::ARCH))?;
    let guard = guard(
        audit_arch(std::env::consts::ARCH).ok_or(SeccompError::Arch(std::env::consts::ARCH))?,
    );
    if policy.deny.is_empty() {
        return Ok(Filters { guard, deny: None });
    }
    // Each syscall's rules, OR'ed; `None` once a rule denies it whatever its arguments (an
    // empty chain is seccompiler's "always").
    let mut rules: BTreeMap<i64, Option<Vec<SeccompRule>>> = BTreeMap::new();
    for rule in &policy.deny {
        let err = |source| SeccompError::Rule {
            syscall: rule.name.clone(),
            source,
        };
        let cond = |arg, op, value| {
            SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value).map_err(err)
        };
        let chain = match rule.when {
            None => None,
            Some(ArgCondition::AnyBit { arg, mask }) => Some(
                (0..64)
                    .map(|bit| 1u64 << bit)
                    .filter(|bit| mask & bit != 0)
                    .map(|bit| {
                        SeccompRule::new(vec![cond(arg, SeccompCmpOp::MaskedEq(bit), bit)?])
                            .map_err(err)
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            Some(ArgCondition::OneOf { arg, values }) => Some(
                values
                    .iter()
                    .map(|v| SeccompRule::new(vec![cond(arg, SeccompCmpOp::Eq, *v)?]).map_err(err))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            // Denied when the argument differs from every allowed number: one rule whose
            // conditions all hold.
            Some(ArgCondition::NotIn { arg, allowed }) => {
                let conditions = (0..64u64)
                    .filter(|n| allowed & (1 << n) != 0)
                    .map(|n| cond(arg, SeccompCmpOp::Ne, n))
                    .collect::<Result<Vec<_>, _>>()?;
                Some(vec![SeccompRule::new(conditions).map_err(err)?])
            }
        };
        let entry = rules
            .entry(i64::from(rule.nr))
            .or_insert_with(|| Some(Vec::new()));
        match (entry.as_mut(), chain) {
            (Some(have), Some(more)) => have.extend(more),
            (_, None) => *entry = None,
            (None, Some(_)) => {}
        }
    }
    let rules: BTreeMap<i64, Vec<SeccompRule>> = rules
        .into_iter()
        .map(|(nr, chain)| (nr, chain.unwrap_or_default()))
        .collect();
    let on_match = match policy.action {
        SyscallAction::Errno => SeccompAction::Errno(DENY_ERRNO as u32),
        SyscallAction::Kill => SeccompAction::KillProcess,
    };
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, on_match, arch)
        .map_err(SeccompError::Compile)?;
    let deny = BpfProgram::try_from(filter).map_err(SeccompError::Compile)?;
    Ok(Filters {
        guard,
        deny: Some(deny),
    })
}

/// Installs both filters on the calling thread. `no_new_privs` must already be set.
pub fn install(filters: &Filters) -> Result<(), SeccompError> {
    seccompiler::apply_filter(&filters.guard).map_err(SeccompError::Install)?;
    if let Some(deny) = &filters.deny {
        seccompiler::apply_filter(deny).map_err(SeccompError::Install)?;
    }
    Ok(())
}

fn audit_arch(arch: &str) -> Option<u32> {
    const AUDIT_ARCH_64BIT_LE: u32 = 0x8000_0000 | 0x4000_0000;
    match arch {
        "x86_64" => Some(62 | AUDIT_ARCH_64BIT_LE),
        "aarch64" => Some(183 | AUDIT_ARCH_64BIT_LE),
        "riscv64" => Some(243 | AUDIT_ARCH_64BIT_LE),
        _ => None,
    }
}

const BPF_LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const BPF_JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const BPF_JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
/// x32 syscalls are x86_64 numbers with this bit set.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn op(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The guard filter (see the module docs), nine instructions.
fn guard(audit_arch: u32) -> BpfProgram {
    let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    vec![
        op(BPF_LD_W_ABS, 0, 0, DATA_ARCH),
        op(BPF_JEQ_K, 1, 0, audit_arch),
        op(BPF_RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
        op(BPF_LD_W_ABS, 0, 0, DATA_NR),
        op(BPF_JGE_K, 0, 1, X32_SYSCALL_BIT),
        op(BPF_RET_K, 0, 0, enosys),
        op(BPF_JEQ_K, 0, 1, libc::SYS_clone3 as u32),
        op(BPF_RET_K, 0, 0, enosys),
        op(BPF_RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::SyscallRule;

    fn rule(name: &str, when: Option<ArgCondition>) -> SyscallRule {
        let nr = name.parse::<syscalls::Sysno>().unwrap().id();
        SyscallRule {
            name: name.to_string(),
            nr,
            when,
        }
    }

    #[test]
    fn several_conditions_of_one_syscall_are_all_compiled() {
        let mptcp = Some(ArgCondition::OneOf {
            arg: 2,
            values: &[262],
        });
        let families = Some(ArgCondition::NotIn {
            arg: 0,
            allowed: 0b110,
        });
        let policy = SyscallPolicy {
            action: SyscallAction::Errno,
            deny: vec![rule("socket", mptcp), rule("socket", families)],
        };
        // One Ne per allowed family, in one rule, beside the MPTCP rule.
        let deny = compile(&policy).unwrap().deny.unwrap();
        let ne_checks = deny
            .iter()
            .filter(|i| i.code == BPF_JEQ_K && (i.k == 1 || i.k == 2))
            .count();
        assert!(ne_checks >= 2, "{deny:?}");
    }

    #[test]
    fn an_empty_deny_list_still_installs_the_guard() {
        let f = compile(&SyscallPolicy {
            action: SyscallAction::Errno,
            deny: vec![],
        })
        .unwrap();
        assert!(f.deny.is_none());
        assert_eq!(f.guard.len(), 9);
    }

    #[test]
    fn flag_conditions_compile_to_one_rule_per_bit() {
        let policy = SyscallPolicy {
            action: SyscallAction::Kill,
            deny: vec![
                rule("ptrace", None),
                rule(
                    "unshare",
                    Some(ArgCondition::AnyBit {
                        arg: 0,
                        mask: 0b101,
                    }),
                ),
            ],
        };
        let f = compile(&policy).unwrap();
        let deny = f.deny.unwrap();
        // The kill action appears once per matching path: ptrace, and each flag bit of unshare.
        let kills = deny
            .iter()
            .filter(|i| i.code == BPF_RET_K && i.k == libc::SECCOMP_RET_KILL_PROCESS)
            .count();
        assert!(kills >= 3, "{deny:?}");
    }
}

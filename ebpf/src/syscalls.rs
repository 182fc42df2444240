//! The syscall deny list as the eBPF program that reports seccomp's denials reads it: the
//! seccomp filter itself is compiled by `cordon_sandbox::seccomp` from the same
//! [`SyscallPolicy`].

use std::collections::BTreeMap;

use cordon_policy::policy::{ArgCondition, SyscallPolicy};
use cordon_sandbox::seccomp::DENY_ERRNO;
use zerocopy::FromZeros as _;

use crate::abi;

/// The same deny list for the eBPF program that reports seccomp's denials (it sees a denied
/// call at `sys_exit`, failing with [`DENY_ERRNO`]): one entry per syscall number, whose
/// conditions are the rules of that syscall (denied when any matches; none: always).
///
/// `audited` (`mode = "audit"`): the rules the filter does not hold get errno 0, which the
/// program reads as "let through: report the call whatever its result".
pub fn rules(policy: &SyscallPolicy, audited: bool) -> Vec<(u32, abi::SyscallRule)> {
    let mut out: BTreeMap<u32, abi::SyscallRule> = BTreeMap::new();
    // Syscalls denied whatever their arguments: their entry keeps no condition.
    let mut always = std::collections::BTreeSet::new();
    for rule in &policy.deny {
        let Ok(nr) = u32::try_from(rule.nr) else {
            continue;
        };
        let kept = !audited || rule.kept_in_audit();
        let entry = out.entry(nr).or_insert_with(|| {
            let mut entry = abi::SyscallRule::new_zeroed();
            entry.errno_value = if kept { DENY_ERRNO } else { 0 };
            entry
        });
        let mut condition = abi::SyscallCondition::new_zeroed();
        match rule.when {
            None => {
                always.insert(nr);
                continue;
            }
            Some(ArgCondition::AnyBit { arg, mask }) => {
                condition.op = abi::CORDON_ARG_ANY_BIT as u32;
                condition.arg = arg.into();
                condition.mask = mask;
            }
            Some(ArgCondition::OneOf { arg, values }) => {
                condition.op = abi::CORDON_ARG_ONE_OF as u32;
                condition.arg = arg.into();
                let n = values.len().min(abi::CORDON_MAX_ARG_VALUES);
                condition.values[..n].copy_from_slice(&values[..n]);
                condition.nvalues = n as u32;
            }
            Some(ArgCondition::NotIn { arg, allowed }) => {
                condition.op = abi::CORDON_ARG_NOT_IN as u32;
                condition.arg = arg.into();
                condition.mask = allowed;
            }
        }
        let n = entry.nconditions as usize;
        if n < abi::CORDON_MAX_ARG_CONDITIONS {
            entry.conditions[n] = condition;
            entry.nconditions += 1;
        }
    }
    for nr in always {
        if let Some(entry) = out.get_mut(&nr) {
            entry.nconditions = 0;
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_policy::policy::SyscallRule;
    use cordon_policy::profile::SyscallAction;

    #[test]
    fn the_kernel_rules_carry_the_same_conditions_as_the_filter() {
        let policy = SyscallPolicy {
            action: SyscallAction::Errno,
            deny: vec![
                rule("bpf", None),
                rule(
                    "ioctl",
                    Some(ArgCondition::OneOf {
                        arg: 1,
                        values: &[0x5412, 0x541c],
                    }),
                ),
                rule(
                    "unshare",
                    Some(ArgCondition::AnyBit {
                        arg: 0,
                        mask: libc::CLONE_NEWUSER as u64,
                    }),
                ),
            ],
        };
        let entries: std::collections::HashMap<u32, abi::SyscallRule> =
            rules(&policy, false).into_iter().collect();
        let nr = |n: &str| n.parse::<syscalls::Sysno>().unwrap().id() as u32;
        assert_eq!(entries[&nr("bpf")].nconditions, 0);
        assert_eq!(entries[&nr("bpf")].errno_value, libc::EPERM);
        let ioctl = entries[&nr("ioctl")].conditions[0];
        assert_eq!(
            (ioctl.op, ioctl.arg, ioctl.nvalues),
            (abi::CORDON_ARG_ONE_OF as u32, 1, 2)
        );
        let unshare = entries[&nr("unshare")].conditions[0];
        assert_eq!(unshare.mask, libc::CLONE_NEWUSER as u64);
    }

    #[test]
    fn every_preset_condition_fits_the_kernel_entry() {
        for (name, when) in cordon_policy::policy::PRESETS
            .iter()
            .flat_map(|(_, rules)| rules.iter())
        {
            if let Some(ArgCondition::OneOf { values, .. }) = when {
                assert!(values.len() <= abi::CORDON_MAX_ARG_VALUES, "{name}");
            }
        }
    }

    #[test]
    fn several_rules_of_one_syscall_are_all_kept_and_an_unconditional_one_wins() {
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
        let entries: std::collections::HashMap<u32, abi::SyscallRule> =
            rules(&policy, false).into_iter().collect();
        let socket = entries[&(libc::SYS_socket as u32)];
        assert_eq!(socket.nconditions, 2);
        assert_eq!(socket.conditions[1].op, abi::CORDON_ARG_NOT_IN as u32);
        assert_eq!(socket.conditions[1].mask, 0b110);

        let policy = SyscallPolicy {
            action: SyscallAction::Errno,
            deny: vec![rule("socket", mptcp), rule("socket", None)],
        };
        let entries: std::collections::HashMap<u32, abi::SyscallRule> =
            rules(&policy, false).into_iter().collect();
        assert_eq!(entries[&(libc::SYS_socket as u32)].nconditions, 0);
    }

    fn rule(name: &str, when: Option<ArgCondition>) -> SyscallRule {
        let nr = name.parse::<syscalls::Sysno>().unwrap().id();
        SyscallRule {
            name: name.to_string(),
            nr,
            when,
        }
    }
}

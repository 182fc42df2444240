//! seccomp: the syscall deny list, compiled to BPF in the parent and installed in the child
//! as the very last step before `execve`.
//!
//! Two filters are installed:
//! * the **guard**: it kills any call made with a foreign architecture (32-bit `int 0x80` on
//!   x86_64), answers x32 syscall numbers and `clone3` with ENOSYS (`clone3` passes its flags
//!   in memory seccomp cannot read; libc then falls back to `clone`, whose flags the deny list
//!   checks);
//! * the **deny list** from the policy, where every call not listed is allowed: a binary
//!   search over the listed syscall numbers (a handful of jumps whatever the list's length),
//!   each leaf the argument checks of its syscall, if any. The kernel, when it installs a
//!   filter, runs it once per syscall number to fill its per-filter action cache (calls whose
//!   answer does not depend on their arguments are then never run through the filter again):
//!   with a search that is a few instructions per number, where a chain of comparisons was
//!   as long as the list (a quarter of a millisecond of every launch).
//!
//! Both are written here as classic BPF, built backwards (see [`Emitter`]) so that every jump
//! is forward and its distance known when it is written. seccompiler installs them.

use std::collections::BTreeMap;

use seccompiler::{sock_filter, BpfProgram};

use crate::policy::{ArgCondition, SyscallPolicy};
use crate::profile::SyscallAction;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp does not support this architecture ({0})")]
    Arch(&'static str),
    #[error("cannot compile the deny list for `{syscall}`: {why}")]
    Rule { syscall: String, why: String },
    #[error("the deny list compiles to {0} BPF instructions, more than the kernel takes (4096)")]
    TooLong(usize),
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
    let arch =
        audit_arch(std::env::consts::ARCH).ok_or(SeccompError::Arch(std::env::consts::ARCH))?;
    let guard = guard(arch);
    if policy.deny.is_empty() {
        return Ok(Filters { guard, deny: None });
    }
    // Each syscall's rules, OR'ed, each an AND of checks; `None` once a rule denies it
    // whatever its arguments.
    let mut rules: BTreeMap<u32, Option<Vec<Vec<Check>>>> = BTreeMap::new();
    for rule in &policy.deny {
        let nr = u32::try_from(rule.nr).map_err(|_| SeccompError::Rule {
            syscall: rule.name.clone(),
            why: format!("{} is not a syscall number", rule.nr),
        })?;
        let alternatives = rule
            .when
            .map(checks)
            .transpose()
            .map_err(|why| SeccompError::Rule {
                syscall: rule.name.clone(),
                why,
            })?;
        let entry = rules.entry(nr).or_insert_with(|| Some(Vec::new()));
        match (entry.as_mut(), alternatives) {
            (Some(have), Some(more)) => have.extend(more),
            (_, None) => *entry = None,
            (None, Some(_)) => {}
        }
    }
    let deny = match policy.action {
        SyscallAction::Errno => libc::SECCOMP_RET_ERRNO | DENY_ERRNO as u32,
        SyscallAction::Kill => libc::SECCOMP_RET_KILL_PROCESS,
    };
    let program = deny_list(arch, &rules, deny);
    if program.len() > BPF_MAXINSNS {
        return Err(SeccompError::TooLong(program.len()));
    }
    Ok(Filters {
        guard,
        deny: Some(program),
    })
}

/// The kernel's limit on the instructions of one classic BPF program.
const BPF_MAXINSNS: usize = 4096;

/// One test of the low or high 32 bits of an argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// The word equals `value`.
    Eq { offset: u32, value: u32 },
    /// The word differs from `value`.
    Ne { offset: u32, value: u32 },
    /// The word has one of the bits of `mask` set.
    AnyBit { offset: u32, mask: u32 },
}

/// Where the low and the high 32 bits of argument `arg` are in `struct seccomp_data`.
fn arg_words(arg: u8) -> Result<(u32, u32), String> {
    if arg > 5 {
        return Err(format!("a syscall has six arguments, not argument {arg}"));
    }
    let low = DATA_ARGS + 8 * u32::from(arg);
    // Only the little-endian architectures of `audit_arch` are built.
    Ok((low, low + 4))
}

/// A condition as alternatives (denied when any holds), each of checks that must all hold.
/// `OneOf` and `NotIn` compare the argument's low 32 bits (what an `int` or `unsigned int`
/// parameter is; the kernel ignores the rest); `AnyBit` looks at all 64.
fn checks(when: ArgCondition) -> Result<Vec<Vec<Check>>, String> {
    match when {
        ArgCondition::AnyBit { arg, mask } => {
            let (low, high) = arg_words(arg)?;
            let mut alternatives = Vec::new();
            for (offset, mask) in [(low, mask as u32), (high, (mask >> 32) as u32)] {
                if mask != 0 {
                    alternatives.push(vec![Check::AnyBit { offset, mask }]);
                }
            }
            if alternatives.is_empty() {
                return Err("a mask with no bit set matches nothing".into());
            }
            Ok(alternatives)
        }
        ArgCondition::OneOf { arg, values } => {
            let (low, _) = arg_words(arg)?;
            values
                .iter()
                .map(|v| {
                    let value = u32::try_from(*v)
                        .map_err(|_| format!("{v:#x} is over the 32 bits compared"))?;
                    Ok(vec![Check::Eq { offset: low, value }])
                })
                .collect()
        }
        // Denied when the argument differs from every allowed number: one alternative whose
        // checks all hold.
        ArgCondition::NotIn { arg, allowed } => {
            let (low, _) = arg_words(arg)?;
            Ok(vec![(0..64u32)
                .filter(|n| allowed & (1 << n) != 0)
                .map(|value| Check::Ne { offset: low, value })
                .collect()])
        }
    }
}

/// The deny list as a program: the architecture checked, then a binary search over the
/// listed numbers; a number not listed is allowed, a listed one denied when one of its
/// alternatives holds (or always, for `None`).
fn deny_list(arch: u32, rules: &BTreeMap<u32, Option<Vec<Vec<Check>>>>, deny: u32) -> BpfProgram {
    let mut e = Emitter::default();
    let allow = e.ret(libc::SECCOMP_RET_ALLOW);
    let denied = e.ret(deny);
    let leaves: Vec<(u32, Label)> = rules
        .iter()
        .map(|(nr, alternatives)| {
            let entry = match alternatives {
                None => denied,
                Some(alternatives) => {
                    // Backwards: the last alternative failing allows the call.
                    let mut next = allow;
                    for checks in alternatives.iter().rev() {
                        let mut pass = denied;
                        for check in checks.iter().rev() {
                            pass = e.check(*check, pass, next);
                        }
                        next = pass;
                    }
                    next
                }
            };
            (*nr, entry)
        })
        .collect();
    let search = e.search(&leaves, allow);
    let load_nr = e.load(DATA_NR, search);
    let kill = e.ret(libc::SECCOMP_RET_KILL_PROCESS);
    let arch_ok = e.jump(BPF_JEQ_K, arch, load_nr, kill);
    e.load(DATA_ARCH, arch_ok);
    e.finish()
}

/// A place in a program being built backwards: the instruction's index counted from the
/// program's end (0 is the last one).
type Label = usize;

/// Builds a classic BPF program from its end to its start. Every jump of classic BPF is
/// forward, so when an instruction is written, all it can jump to is written already and its
/// distance known; a conditional jump reaches at most 255 instructions, so a farther target
/// is reached through an unconditional `ja` (32-bit offset) written just after it.
#[derive(Default)]
struct Emitter {
    /// The program, last instruction first.
    reversed: Vec<sock_filter>,
}

impl Emitter {
    fn push(&mut self, instruction: sock_filter) -> Label {
        self.reversed.push(instruction);
        self.reversed.len() - 1
    }

    /// How far an instruction written now jumps to reach `target`.
    fn distance(&self, target: Label) -> usize {
        self.reversed.len() - target - 1
    }

    fn ret(&mut self, action: u32) -> Label {
        self.push(op(BPF_RET_K, 0, 0, action))
    }

    /// `A = seccomp_data[offset]` (32 bits), then on to `next`.
    fn load(&mut self, offset: u32, next: Label) -> Label {
        let next = self.near(next, 0);
        assert_eq!(
            self.distance(next),
            0,
            "a load falls through to what follows it"
        );
        self.push(op(BPF_LD_W_ABS, 0, 0, offset))
    }

    /// `target`, or a `ja` to it written now when a jump from here would not reach it.
    fn near(&mut self, target: Label, reach: usize) -> Label {
        if self.distance(target) <= reach {
            return target;
        }
        // A return is copied rather than jumped to: as short, and one instruction less to run.
        let at = &self.reversed[target];
        if at.code == BPF_RET_K {
            let action = at.k;
            return self.ret(action);
        }
        let offset = u32::try_from(self.distance(target)).unwrap_or(u32::MAX);
        self.push(op(BPF_JA, 0, 0, offset))
    }

    /// A conditional jump on `A` against `k`: to `yes` when it holds, to `no` otherwise.
    fn jump(&mut self, code: u16, k: u32, yes: Label, no: Label) -> Label {
        let yes = self.near(yes, u8::MAX as usize);
        // A trampoline for `no` puts `yes` one further: still in reach, or made so.
        let no = self.near(no, u8::MAX as usize);
        let yes = self.near(yes, u8::MAX as usize);
        // `near` put both in reach; a jump cut short would go elsewhere, so never truncate.
        let (Ok(jt), Ok(jf)) = (
            u8::try_from(self.distance(yes)),
            u8::try_from(self.distance(no)),
        ) else {
            panic!("a conditional jump out of reach");
        };
        self.push(op(code, jt, jf, k))
    }

    /// One check of an argument word: to `pass` when it holds, to `fail` otherwise.
    fn check(&mut self, check: Check, pass: Label, fail: Label) -> Label {
        let (offset, test) = match check {
            Check::Eq { offset, value } => (offset, self.jump(BPF_JEQ_K, value, pass, fail)),
            Check::Ne { offset, value } => (offset, self.jump(BPF_JEQ_K, value, fail, pass)),
            Check::AnyBit { offset, mask } => (offset, self.jump(BPF_JSET_K, mask, pass, fail)),
        };
        self.load(offset, test)
    }

    /// A binary search of `A` (the syscall number) among `leaves`, sorted by number: to the
    /// leaf's label when it is one of them, to `otherwise` when not.
    fn search(&mut self, leaves: &[(u32, Label)], otherwise: Label) -> Label {
        match leaves {
            [] => otherwise,
            [(nr, leaf)] => self.jump(BPF_JEQ_K, *nr, *leaf, otherwise),
            _ => {
                let (below, from) = leaves.split_at(leaves.len() / 2);
                let high = self.search(from, otherwise);
                let low = self.search(below, otherwise);
                self.jump(BPF_JGE_K, from[0].0, high, low)
            }
        }
    }

    fn finish(mut self) -> BpfProgram {
        self.reversed.reverse();
        self.reversed
    }
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
const BPF_JSET_K: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const BPF_JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const BPF_RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
/// Offsets in `struct seccomp_data`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;
const DATA_ARGS: u32 = 16;
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
    fn an_empty_deny_list_still_installs_the_guard() {
        let f = compile(&SyscallPolicy {
            action: SyscallAction::Errno,
            deny: vec![],
        })
        .unwrap();
        assert!(f.deny.is_none());
        assert_eq!(f.guard.len(), 9);
    }

    /// Runs a classic BPF program as the kernel would on `data` (`struct seccomp_data`):
    /// only what the compilers here write (loads of a word, jumps on a constant, returns).
    fn run(program: &[sock_filter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        steps(program, nr, arch, args).0
    }

    /// [`run`], and how many instructions it took.
    fn steps(program: &[sock_filter], nr: u32, arch: u32, args: [u64; 6]) -> (u32, usize) {
        let word = |offset: u32| -> u32 {
            match offset {
                DATA_NR => nr,
                DATA_ARCH => arch,
                o if (DATA_ARGS..DATA_ARGS + 48).contains(&o) && o.is_multiple_of(4) => {
                    let arg = args[((o - DATA_ARGS) / 8) as usize];
                    if (o - DATA_ARGS).is_multiple_of(8) {
                        arg as u32
                    } else {
                        (arg >> 32) as u32
                    }
                }
                o => panic!("a load from offset {o}, outside seccomp_data's words"),
            }
        };
        let (mut pc, mut a, mut count) = (0usize, 0u32, 0usize);
        loop {
            let i = &program[pc];
            count += 1;
            let skip = |taken: bool| 1 + usize::from(if taken { i.jt } else { i.jf });
            pc += match i.code {
                BPF_LD_W_ABS => {
                    a = word(i.k);
                    1
                }
                BPF_JEQ_K => skip(a == i.k),
                BPF_JGE_K => skip(a >= i.k),
                BPF_JSET_K => skip(a & i.k != 0),
                BPF_JA => 1 + i.k as usize,
                BPF_RET_K => return (i.k, count),
                code => panic!("instruction {code:#x} at {pc}"),
            };
            assert!(pc < program.len(), "ran off the end of the program");
        }
    }

    /// What the policy means, written out plainly: whether a call is denied.
    fn denies(policy: &SyscallPolicy, nr: u32, args: [u64; 6]) -> bool {
        policy.deny.iter().any(|rule| {
            rule.nr as u32 == nr
                && match rule.when {
                    None => true,
                    Some(ArgCondition::AnyBit { arg, mask }) => args[arg as usize] & mask != 0,
                    Some(ArgCondition::OneOf { arg, values }) => {
                        values.contains(&u64::from(args[arg as usize] as u32))
                    }
                    Some(ArgCondition::NotIn { arg, allowed }) => {
                        let low = args[arg as usize] as u32;
                        low >= 64 || allowed & (1 << low) == 0
                    }
                }
        })
    }

    /// Argument values around every constant the policy names: each value, each bit, each
    /// mask, one more and one less, with and without high bits.
    fn probes(policy: &SyscallPolicy) -> Vec<u64> {
        let mut base = vec![0, 1, 2, 63, 64, 65, u64::from(u32::MAX), u64::MAX];
        for rule in &policy.deny {
            match rule.when {
                Some(ArgCondition::AnyBit { mask, .. }) => {
                    base.push(mask);
                    base.extend((0..64).map(|b| 1u64 << b).filter(|b| mask & b != 0));
                    base.push(!mask);
                }
                Some(ArgCondition::OneOf { values, .. }) => base.extend(values),
                Some(ArgCondition::NotIn { allowed, .. }) => {
                    base.extend((0..64).filter(|n| allowed & (1 << n) != 0));
                }
                None => {}
            }
        }
        let mut out: Vec<u64> = base
            .iter()
            .flat_map(|v| [*v, v.wrapping_add(1), v.wrapping_sub(1), v | (1 << 40)])
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The compiled deny list decides as the policy says, for every syscall number and, for
    /// a number with argument checks, every combination of values near the policy's
    /// constants in all the arguments its rules name at once (a rule can hide another's
    /// mistake when the others are left at 0).
    fn assert_compiled_as_written(policy: &SyscallPolicy) {
        let filters = compile(policy).unwrap();
        let deny = filters.deny.as_ref().expect("a deny list");
        let arch = audit_arch(std::env::consts::ARCH).unwrap();
        let denied = match policy.action {
            SyscallAction::Errno => libc::SECCOMP_RET_ERRNO | DENY_ERRNO as u32,
            SyscallAction::Kill => libc::SECCOMP_RET_KILL_PROCESS,
        };
        let probes = probes(policy);
        let highest = policy.deny.iter().map(|r| r.nr as u32).max().unwrap_or(0);
        let check = |nr: u32, args: [u64; 6]| {
            let want = if denies(policy, nr, args) {
                denied
            } else {
                libc::SECCOMP_RET_ALLOW
            };
            assert_eq!(
                run(deny, nr, arch, args),
                want,
                "syscall {nr}, arguments {args:x?}"
            );
        };
        for nr in (0..=highest + 2).chain([X32_SYSCALL_BIT, u32::MAX]) {
            let mut named: Vec<usize> = policy
                .deny
                .iter()
                .filter(|r| r.nr as u32 == nr)
                .filter_map(|r| match r.when {
                    Some(
                        ArgCondition::AnyBit { arg, .. }
                        | ArgCondition::OneOf { arg, .. }
                        | ArgCondition::NotIn { arg, .. },
                    ) => Some(usize::from(arg)),
                    None => None,
                })
                .collect();
            named.sort_unstable();
            named.dedup();
            // Each argument alone, the others 0 and then all ones...
            for position in 0..6 {
                for value in &probes {
                    for rest in [0, u64::MAX] {
                        let mut args = [rest; 6];
                        args[position] = *value;
                        check(nr, args);
                    }
                }
            }
            // ...then every combination over the arguments the rules name.
            let mut combination = vec![0usize; named.len()];
            'all: loop {
                let mut args = [0u64; 6];
                for (slot, &position) in named.iter().enumerate() {
                    args[position] = probes[combination[slot]];
                }
                check(nr, args);
                for digit in combination.iter_mut() {
                    *digit += 1;
                    if *digit < probes.len() {
                        continue 'all;
                    }
                    *digit = 0;
                }
                break;
            }
        }
        // A foreign architecture is killed, whatever the call.
        assert_eq!(
            run(deny, 0, arch ^ 1, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }

    /// Every shipped profile, resolved as `cordon run` would (the preset, the profile's own
    /// list, and the socket-family rule its network section adds).
    #[test]
    fn every_shipped_profile_compiles_to_what_it_says() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
        let search = crate::profile::SearchPath::new(vec![dir.clone()]);
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(name) = name.strip_suffix(".toml") else {
                continue;
            };
            if name.ends_with(".expect") {
                continue;
            }
            let profile = search.load(name).unwrap();
            let context = crate::policy::Context {
                workspace: std::path::PathBuf::from("/work/ws"),
                caller_home: Some(std::path::PathBuf::from("/home/dev")),
                caller_uid: 1000,
                caller_gid: 1000,
                caller_groups: vec![1000],
            };
            let policy = crate::policy::compile(&profile, &context).unwrap();
            assert!(
                policy
                    .syscalls
                    .deny
                    .iter()
                    .filter(|r| r.name == "socket")
                    .count()
                    >= 2,
                "{name}: the preset's and the family rule for socket"
            );
            assert_compiled_as_written(&policy.syscalls);
            seen += 1;
        }
        assert!(seen >= 5, "only {seen} profiles in {}", dir.display());
    }

    #[test]
    fn every_preset_compiles_to_what_it_says() {
        for (name, rules) in crate::policy::PRESETS {
            for action in [SyscallAction::Errno, SyscallAction::Kill] {
                let policy = SyscallPolicy {
                    action,
                    deny: rules
                        .iter()
                        .filter_map(|(syscall, when)| {
                            let nr = syscall.parse::<syscalls::Sysno>().ok()?.id();
                            Some(SyscallRule {
                                name: syscall.to_string(),
                                nr,
                                when: *when,
                            })
                        })
                        .collect(),
                };
                if policy.deny.is_empty() {
                    assert_eq!(*name, "none", "a preset that denies nothing");
                    continue;
                }
                assert_compiled_as_written(&policy);
            }
        }
    }

    #[test]
    fn several_rules_of_one_syscall_and_flags_in_both_halves_are_all_kept() {
        let policy = SyscallPolicy {
            action: SyscallAction::Errno,
            deny: vec![
                rule(
                    "socket",
                    Some(ArgCondition::OneOf {
                        arg: 2,
                        values: &[262],
                    }),
                ),
                rule(
                    "socket",
                    Some(ArgCondition::NotIn {
                        arg: 0,
                        allowed: 0b110,
                    }),
                ),
                rule(
                    "unshare",
                    Some(ArgCondition::AnyBit {
                        arg: 0,
                        mask: 0x1_0000_0101,
                    }),
                ),
                rule("ptrace", None),
                // An unconditional rule wins over a conditional one of the same syscall.
                rule(
                    "kcmp",
                    Some(ArgCondition::OneOf {
                        arg: 0,
                        values: &[1],
                    }),
                ),
                rule("kcmp", None),
            ],
        };
        assert_compiled_as_written(&policy);
    }

    #[test]
    fn jumps_past_what_a_conditional_jump_reaches_go_through_trampolines() {
        // 600 values to compare for socket: ioctl's checks, laid out past them, are farther
        // from the search than the 255 instructions a conditional jump reaches.
        let values: &'static [u64] =
            Box::leak((1000..1600).collect::<Vec<u64>>().into_boxed_slice());
        let mut deny = vec![
            rule("socket", Some(ArgCondition::OneOf { arg: 1, values })),
            rule(
                "ioctl",
                Some(ArgCondition::OneOf {
                    arg: 1,
                    values: &[0x5412],
                }),
            ),
        ];
        deny.extend(
            [
                "ptrace",
                "bpf",
                "kexec_load",
                "mount",
                "umount2",
                "pivot_root",
                "chroot",
            ]
            .iter()
            .map(|n| rule(n, None)),
        );
        let policy = SyscallPolicy {
            action: SyscallAction::Kill,
            deny,
        };
        let program = compile(&policy).unwrap().deny.unwrap();
        assert!(program.len() > 1200, "{}", program.len());
        assert!(program.iter().any(|i| i.code == BPF_JA), "no trampoline");
        assert_compiled_as_written(&policy);
    }

    #[test]
    fn a_deny_list_is_a_search_not_a_chain() {
        // Ninety unconditional syscalls: a number not listed is answered within a few
        // comparisons (the kernel runs every number through the filter when installing it).
        let names: Vec<&str> = syscalls::Sysno::iter().take(90).map(|s| s.name()).collect();
        let policy = SyscallPolicy {
            action: SyscallAction::Errno,
            deny: names.iter().map(|n| rule(n, None)).collect(),
        };
        let program = compile(&policy).unwrap().deny.unwrap();
        let arch = audit_arch(std::env::consts::ARCH).unwrap();
        let (action, steps) = steps(&program, 500, arch, [0; 6]);
        assert_eq!(action, libc::SECCOMP_RET_ALLOW);
        // The architecture (3), the number (1), log2(90) comparisons and a leaf (8), a return.
        assert!(steps <= 14, "{steps} instructions for a number not listed");
        assert_compiled_as_written(&policy);
    }
}

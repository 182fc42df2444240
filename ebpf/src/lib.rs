//! Cordon's eBPF side: loading the programs of `ebpf/cordon.bpf.c` once per host, keeping
//! them attached through pins on bpffs, and writing each sandbox's policy into their maps.
//!
//! The programs are attached once to `<cgroup2>/cordon`, the parent of every sandbox's cgroup,
//! and every map is keyed by the sandbox's cgroup id. A new sandbox is therefore a handful
//! of map entries ([`Kernel::register`]), not a program load.
//!
//! Everything lives under `<bpffs>/cordon/<tag>/` (`maps/` and `links/`), where `<tag>` names
//! this build of the programs. Links and maps are pinned, so the policy stays enforced when
//! the process that loaded it is killed, and the next process adopts what is pinned. A
//! different build replaces the programs: a sandbox registered only with the old ones then
//! has no network at all (an unknown cgroup under `cordon/` is denied), never an open one.

pub mod abi;
mod bpf;
mod links;
pub mod ring;
pub mod syscalls;

use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use aya::programs::Program;
use aya_obj::generated::{bpf_attach_type, bpf_map_type};

use crate::bpf as sys;
use cordon_sandbox::cgroup;
pub use ring::Ring;

/// The compiled programs (`ebpf/cordon.bpf.c`, built by `ebpf/build.rs`).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/cordon.bpf.o"));

#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("cannot load the eBPF programs: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("cannot load the eBPF program {name}: {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("the eBPF object has no program {0}")]
    MissingProgram(&'static str),
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error("all {0} event ring buffers are in use")]
    RingsExhausted(usize),
    #[error("{0}")]
    Policy(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EbpfError {
    let what = what.into();
    move |source| EbpfError::Io { what, source }
}

/// Where a program is attached.
#[derive(Clone, Copy)]
enum Hook {
    /// To `<cgroup2>/cordon`, inherited by every sandbox's cgroup.
    Cgroup(bpf_attach_type),
    /// To a raw tracepoint, for every task (the program filters by cgroup id).
    RawTracepoint(&'static str),
}

/// Every program of the object and its hook; a program missing here is never attached.
const PROGRAMS: &[(&str, Hook)] = &[
    (
        "cordon_connect4",
        Hook::Cgroup(bpf_attach_type::BPF_CGROUP_INET4_CONNECT),
    ),
    (
        "cordon_connect6",
        Hook::Cgroup(bpf_attach_type::BPF_CGROUP_INET6_CONNECT),
    ),
    (
        "cordon_sendmsg4",
        Hook::Cgroup(bpf_attach_type::BPF_CGROUP_UDP4_SENDMSG),
    ),
    (
        "cordon_sendmsg6",
        Hook::Cgroup(bpf_attach_type::BPF_CGROUP_UDP6_SENDMSG),
    ),
    (
        "cordon_recvmsg4",
        Hook::Cgroup(bpf_attach_type::BPF_CGROUP_UDP4_RECVMSG),
    ),
    (
        "cordon_recvmsg6",
        Hook::Cgroup(bpf_attach_type::BPF_CGROUP_UDP6_RECVMSG),
    ),
    (
        "cordon_bind4",
        Hook::Cgroup(bpf_attach_type::BPF_CGROUP_INET4_BIND),
    ),
    (
        "cordon_bind6",
        Hook::Cgroup(bpf_attach_type::BPF_CGROUP_INET6_BIND),
    ),
    (
        "cordon_sock_create",
        Hook::Cgroup(bpf_attach_type::BPF_CGROUP_INET_SOCK_CREATE),
    ),
    (
        "cordon_skb_egress",
        Hook::Cgroup(bpf_attach_type::BPF_CGROUP_INET_EGRESS),
    ),
    (
        "cordon_skb_ingress",
        Hook::Cgroup(bpf_attach_type::BPF_CGROUP_INET_INGRESS),
    ),
    ("cordon_sys_exit", Hook::RawTracepoint("sys_exit")),
    ("cordon_exec", Hook::RawTracepoint("sched_process_exec")),
    ("cordon_fork", Hook::RawTracepoint("sched_process_fork")),
    ("cordon_exit", Hook::RawTracepoint("sched_process_exit")),
];

/// The maps user space writes, by their names in the object.
struct Maps {
    sandboxes: OwnedFd,
    dests4: OwnedFd,
    dests6: OwnedFd,
    syscalls: OwnedFd,
    lost: OwnedFd,
    rings: OwnedFd,
    ring_owners: OwnedFd,
    audit_on: OwnedFd,
}

/// The loaded (or adopted) programs and their maps.
pub struct Kernel {
    dir: PathBuf,
    maps: Maps,
    /// Whether this process loaded the programs (false: it adopted pinned ones).
    loaded: bool,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("dir", &self.dir)
            .field("loaded", &self.loaded)
            .finish()
    }
}

/// A cgroup id as the two 32-bit halves the LPM keys hold.
fn halves(cgroup_id: u64) -> (u32, u32) {
    (cgroup_id as u32, (cgroup_id >> 32) as u32)
}

// `TAG`: a stable name for this build of the programs (a hash of the object, by build.rs).
include!(concat!(env!("OUT_DIR"), "/bpf_tag.rs"));

/// Where bpffs is mounted; mounts it at `/sys/fs/bpf` when it is not.
pub fn bpffs() -> Result<PathBuf, EbpfError> {
    if let Some(path) = cgroup::host_mount_point("bpf")? {
        return Ok(path);
    }
    let path = PathBuf::from("/sys/fs/bpf");
    std::fs::create_dir_all(&path).map_err(io(format!("create {}", path.display())))?;
    nix::mount::mount(
        Some("bpf"),
        &path,
        Some("bpf"),
        nix::mount::MsFlags::MS_NOSUID
            | nix::mount::MsFlags::MS_NODEV
            | nix::mount::MsFlags::MS_NOEXEC,
        Some("mode=0700"),
    )
    .map_err(|e| io(format!("mount bpffs at {}", path.display()))(e.into()))?;
    Ok(path)
}

/// The id of the cgroup at `path` (the inode number of its directory).
fn cgroup_id(path: &Path) -> Result<u64, EbpfError> {
    use std::os::linux::fs::MetadataExt as _;
    std::fs::metadata(path)
        .map(|m| m.st_ino())
        .map_err(io(format!("stat {}", path.display())))
}

/// An exclusive `flock` on a directory, so two processes never load at the same time.
/// The eBPF directory's lock, held: what changes the ring pool or the audit switch takes it.
type Locked = nix::fcntl::Flock<std::fs::File>;

fn lock(dir: &Path) -> Result<Locked, EbpfError> {
    let file = std::fs::File::open(dir).map_err(io(format!("open {}", dir.display())))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| io(format!("lock {}", dir.display()))(e.into()))
}

impl Kernel {
    /// Adopts the programs pinned by an earlier process, or loads, attaches and pins them.
    pub fn open() -> Result<Self, EbpfError> {
        let base = bpffs()?.join("cordon");
        std::fs::create_dir_all(&base).map_err(io(format!("create {}", base.display())))?;
        let _lock = lock(&base)?;
        match Self::open_locked(&base, false) {
            Ok(kernel) => Ok(kernel),
            // The pins went away under us (another build replaced them, or an operator
            // removed them): load afresh. Any other error stands; reloading would detach
            // the programs every running sandbox depends on.
            Err(EbpfError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                Self::open_locked(&base, true)
            }
            Err(e) => Err(e),
        }
    }

    fn open_locked(base: &Path, reload: bool) -> Result<Self, EbpfError> {
        let dir = base.join(TAG);
        let links = dir.join("links");
        let parent_dir = cgroup::sandboxes_dir()?;
        std::fs::create_dir_all(&parent_dir)
            .map_err(io(format!("create {}", parent_dir.display())))?;
        let parent = cgroup_id(&parent_dir)?;
        // The set in use is the one pinned here, every link of it still attached.
        let mut ours = Vec::new();
        let mut complete = true;
        for (name, _) in PROGRAMS {
            match links::pinned(&links.join(name), parent) {
                Ok((id, true)) => ours.push(id),
                Ok((_, false)) | Err(_) => complete = false,
            }
        }
        let loaded = reload || !complete;
        if loaded {
            ours.clear();
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(io(format!("remove {}", dir.display())))?;
            }
        }
        // Any other copy of Cordon's programs on its hooks is stale (its pins covered or
        // removed): it would refuse the connections of sandboxes it does not know.
        // Those of another build, still pinned beside this one, are being replaced: expected.
        let previous = other_builds_links(base, &dir, parent);
        let (replaced, stale): (Vec<_>, Vec<_>) =
            links::detach_others(links::cordon_links(parent)?, &ours)
                .into_iter()
                .partition(|(id, _)| previous.contains(id));
        if !replaced.is_empty() {
            tracing::info!(
                "replaced {} eBPF program(s) of another Cordon build",
                replaced.len()
            );
        }
        if !stale.is_empty() {
            let names: Vec<String> = stale.into_iter().map(|(_, name)| name).collect();
            tracing::warn!(
                "detached {} stale Cordon eBPF program(s) whose pins could not be seen ({})",
                names.len(),
                names.join(", ")
            );
        }
        if loaded {
            load(&dir)?;
            remove_other_builds(base, &dir);
        }
        let maps = dir.join("maps");
        let open = |name: &str| {
            let path = maps.join(name);
            sys::bpf_obj_get(&path).map_err(io(format!("open the pinned map {}", path.display())))
        };
        Ok(Self {
            maps: Maps {
                sandboxes: open("sandboxes")?,
                dests4: open("dests4")?,
                dests6: open("dests6")?,
                syscalls: open("syscalls")?,
                lost: open("lost")?,
                rings: open("rings")?,
                ring_owners: open("ring_owners")?,
                audit_on: open("audit_on")?,
            },
            dir,
            loaded,
        })
    }

    /// Whether these are still the maps pinned for this build: another build's `cordon run`
    /// may have replaced them (and unpinned these) since they were opened.
    pub fn is_current(&self) -> bool {
        let pinned = sys::bpf_obj_get(&self.dir.join("maps").join("sandboxes"))
            .and_then(|fd| sys::bpf_map_id(fd.as_fd()));
        let ours = sys::bpf_map_id(self.maps.sandboxes.as_fd());
        matches!((pinned, ours), (Ok(a), Ok(b)) if a == b)
    }

    /// Cordon's programs attached to its hooks that are not the set in use (the names; none
    /// unless something detached or covered pins since this process opened the programs).
    pub fn stale_programs(&self) -> Result<Vec<String>, EbpfError> {
        let parent = cgroup_id(&cgroup::sandboxes_dir()?)?;
        let links_dir = self.dir.join("links");
        let ours: Vec<u32> = PROGRAMS
            .iter()
            .filter_map(|(name, _)| links::pinned(&links_dir.join(name), parent).ok())
            .filter(|(_, attached)| *attached)
            .map(|(id, _)| id)
            .collect();
        Ok(links::cordon_links(parent)?
            .into_iter()
            .filter(|l| !ours.contains(&l.id))
            .map(|l| l.program)
            .collect())
    }

    /// The pin directory of the programs in use.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this process loaded the programs rather than adopting pinned ones.
    pub fn loaded(&self) -> bool {
        self.loaded
    }

    /// Enters a sandbox into the maps: a ring buffer of the pool, its destinations and
    /// denied syscalls, then its entry in `sandboxes`, which is what lets its traffic out and
    /// its events in. Returns its event ring buffer.
    pub fn register(
        &self,
        cgroup_id: u64,
        mut sandbox: abi::Sandbox,
        dests: &[(ipnet::IpNet, abi::Dest)],
        syscalls: &[(u32, abi::SyscallRule)],
    ) -> Result<Ring, EbpfError> {
        let (slot, ring) = self.claim_ring(cgroup_id)?;
        sandbox.ring = slot;
        sys::bpf_map_update(self.maps.lost.as_fd(), &cgroup_id, &abi::Counts::default())
            .map_err(io("register the sandbox's counts"))?;
        for (net, dest) in dests {
            self.allow(cgroup_id, *net, dest)?;
        }
        let (keys, rules): (Vec<abi::SyscallKey>, Vec<abi::SyscallRule>) = syscalls
            .iter()
            .map(|(nr, rule)| (syscall_key(cgroup_id, *nr), *rule))
            .unzip();
        sys::bpf_map_update_all(self.maps.syscalls.as_fd(), &keys, &rules)
            .map_err(io("register the denied syscalls"))?;
        if sandbox.flags & abi::CORDON_SANDBOX_AUDIT as u32 != 0 {
            // Under the lock `unregister` holds for `settle_audit`: it never turns the switch
            // off between this entry and the switch.
            let _lock = lock(&self.dir)?;
            self.set_sandbox(cgroup_id, sandbox)?;
            self.set_auditing(true)?;
        } else {
            self.set_sandbox(cgroup_id, sandbox)?;
        }
        Ok(ring)
    }

    fn set_auditing(&self, on: bool) -> Result<(), EbpfError> {
        sys::bpf_map_update(self.maps.audit_on.as_fd(), &0u32, &u32::from(on))
            .map_err(io("switch auditing"))
    }

    /// Turns the programs' look at successful calls off when no audited sandbox is left.
    /// Called under the lock an audited sandbox registers with (see [`Kernel::register`]),
    /// so none is entered between the scan and the switch. Any doubt (a map that cannot be
    /// read) leaves it on: the switch off blinds every audited sandbox of the host, the
    /// switch on costs a lookup per call.
    fn settle_audit(&self, _locked: &Locked) -> Result<(), EbpfError> {
        if !self.any_audited().unwrap_or(true) {
            self.set_auditing(false)?;
        }
        Ok(())
    }

    fn any_audited(&self) -> Result<bool, EbpfError> {
        let sandboxes = self.maps.sandboxes.as_fd();
        for id in sys::bpf_map_keys::<u64>(sandboxes).map_err(io("list sandboxes"))? {
            let entry = sys::bpf_map_lookup::<u64, abi::Sandbox>(sandboxes, &id)
                .map_err(io("look up a sandbox"))?;
            if entry.is_some_and(|s| s.flags & abi::CORDON_SANDBOX_AUDIT as u32 != 0) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Claims the first free slot of the ring pool for `cgroup_id` and maps its ring, past
    /// whatever the previous holder left unread. A slot never used gets a new ring: the only
    /// time a launch waits for the kernel's RCU grace period (once per slot per boot).
    fn claim_ring(&self, cgroup_id: u64) -> Result<(u32, Ring), EbpfError> {
        for slot in 0..abi::CORDON_MAX_SANDBOXES as u32 {
            if !sys::bpf_map_insert(self.maps.ring_owners.as_fd(), &slot, &cgroup_id)
                .map_err(io("claim a ring buffer"))?
            {
                continue;
            }
            return match self.ring_at(slot) {
                Ok(ring) => Ok((slot, ring)),
                Err(e) => {
                    let _ = sys::bpf_map_delete(self.maps.ring_owners.as_fd(), &slot);
                    Err(e)
                }
            };
        }
        Err(EbpfError::RingsExhausted(abi::CORDON_MAX_SANDBOXES))
    }

    /// The ring of pool slot `slot`, created if the slot has none yet.
    fn ring_at(&self, slot: u32) -> Result<Ring, EbpfError> {
        let existing = sys::bpf_map_lookup::<u32, u32>(self.maps.rings.as_fd(), &slot)
            .map_err(io("look up a ring buffer"))?;
        let fd = match existing {
            Some(id) => sys::bpf_map_get_fd_by_id(id).map_err(io("open a ring buffer"))?,
            None => {
                let fd = sys::bpf_map_create(
                    bpf_map_type::BPF_MAP_TYPE_RINGBUF,
                    0,
                    0,
                    abi::CORDON_RING_BYTES as u32,
                    None,
                )
                .map_err(io("create a ring buffer"))?;
                let raw = std::os::fd::AsRawFd::as_raw_fd(&fd) as u32;
                sys::bpf_map_update(self.maps.rings.as_fd(), &slot, &raw)
                    .map_err(io("add a ring buffer to the pool"))?;
                fd
            }
        };
        let mut ring = Ring::new(fd, abi::CORDON_RING_BYTES).map_err(io("map a ring buffer"))?;
        ring.skip_all();
        Ok(ring)
    }

    /// Gives the ring slots `cgroup_id` holds back to the pool.
    ///
    /// Under a lock: the holder is looked up, then deleted, and two processes releasing the
    /// same sandbox (its run and a sweep) must not see it hold a slot that one of them has
    /// already released and a new sandbox claimed. Claims need no lock (`BPF_NOEXIST`).
    fn release_rings(&self, cgroup_id: u64, _locked: &Locked) -> Result<(), EbpfError> {
        let owners = self.maps.ring_owners.as_fd();
        for slot in sys::bpf_map_keys::<u32>(owners).map_err(io("list ring buffers"))? {
            let owner = sys::bpf_map_lookup::<u32, u64>(owners, &slot)
                .map_err(io("look up a ring buffer's holder"))?;
            if owner == Some(cgroup_id) {
                sys::bpf_map_delete(owners, &slot).map_err(io("release a ring buffer"))?;
            }
        }
        Ok(())
    }

    fn set_sandbox(&self, cgroup_id: u64, sandbox: abi::Sandbox) -> Result<(), EbpfError> {
        sys::bpf_map_update(self.maps.sandboxes.as_fd(), &cgroup_id, &sandbox)
            .map_err(io("register the sandbox"))
    }

    /// The sandbox's entry, if it is registered.
    pub fn sandbox(&self, cgroup_id: u64) -> Result<Option<abi::Sandbox>, EbpfError> {
        sys::bpf_map_lookup(self.maps.sandboxes.as_fd(), &cgroup_id)
            .map_err(io("read the sandbox entry"))
    }

    /// Cuts (or restores) every packet and new connection of a registered sandbox.
    pub fn set_isolated(&self, cgroup_id: u64, isolated: bool) -> Result<(), EbpfError> {
        let Some(mut sandbox) = self.sandbox(cgroup_id)? else {
            return Err(EbpfError::Policy(format!(
                "cgroup {cgroup_id} is not a registered sandbox"
            )));
        };
        if isolated {
            sandbox.flags |= abi::CORDON_SANDBOX_ISOLATED as u32;
        } else {
            sandbox.flags &= !(abi::CORDON_SANDBOX_ISOLATED as u32);
        }
        self.set_sandbox(cgroup_id, sandbox)
    }

    /// Marks a sandbox as killed by a responder, for its watcher to report.
    pub fn mark_killed(&self, cgroup_id: u64) -> Result<(), EbpfError> {
        if let Some(mut sandbox) = self.sandbox(cgroup_id)? {
            sandbox.flags |= abi::CORDON_SANDBOX_KILLED as u32;
            self.set_sandbox(cgroup_id, sandbox)?;
        }
        Ok(())
    }

    /// Lets the sandbox reach `net` on the ports of `dest` (an IPv4 prefix is also entered
    /// as its IPv4-mapped IPv6 form, which an IPv6 socket uses to reach it).
    pub fn allow(
        &self,
        cgroup_id: u64,
        net: ipnet::IpNet,
        dest: &abi::Dest,
    ) -> Result<(), EbpfError> {
        let (lo, hi) = halves(cgroup_id);
        match net {
            ipnet::IpNet::V4(v4) => {
                let key = abi::Dest4Key {
                    prefixlen: 64 + u32::from(v4.prefix_len()),
                    cgroup_lo: lo,
                    cgroup_hi: hi,
                    addr: v4.network().octets(),
                };
                sys::bpf_map_update(self.maps.dests4.as_fd(), &key, dest)
                    .map_err(io("allow a destination"))?;
                let mapped =
                    ipnet::Ipv6Net::new(v4.network().to_ipv6_mapped(), 96 + v4.prefix_len())
                        .map_err(|e| EbpfError::Policy(e.to_string()))?;
                self.allow(cgroup_id, ipnet::IpNet::V6(mapped), dest)
            }
            ipnet::IpNet::V6(v6) => {
                let key = abi::Dest6Key {
                    prefixlen: 64 + u32::from(v6.prefix_len()),
                    cgroup_lo: lo,
                    cgroup_hi: hi,
                    addr: v6.network().octets(),
                };
                sys::bpf_map_update(self.maps.dests6.as_fd(), &key, dest)
                    .map_err(io("allow a destination"))
            }
        }
    }

    /// The destination entry that exactly matches `addr` (a DNS answer entered earlier).
    pub fn allowed(&self, cgroup_id: u64, addr: IpAddr) -> Result<Option<abi::Dest>, EbpfError> {
        let (lo, hi) = halves(cgroup_id);
        let found = match addr {
            IpAddr::V4(v4) => {
                let key = abi::Dest4Key {
                    prefixlen: 96,
                    cgroup_lo: lo,
                    cgroup_hi: hi,
                    addr: v4.octets(),
                };
                sys::bpf_map_lookup(self.maps.dests4.as_fd(), &key)
            }
            IpAddr::V6(v6) => {
                let key = abi::Dest6Key {
                    prefixlen: 192,
                    cgroup_lo: lo,
                    cgroup_hi: hi,
                    addr: v6.octets(),
                };
                sys::bpf_map_lookup(self.maps.dests6.as_fd(), &key)
            }
        };
        found.map_err(io("read a destination"))
    }

    /// What the kernel side counted for the sandbox: records its ring had no room for,
    /// missing paths not examined above the rate.
    pub fn counts(&self, cgroup_id: u64) -> Result<abi::Counts, EbpfError> {
        Ok(sys::bpf_map_lookup(self.maps.lost.as_fd(), &cgroup_id)
            .map_err(io("read the sandbox's counts"))?
            .unwrap_or_default())
    }

    /// Removes the entries of a sandbox and gives its ring buffer back to the pool. Its
    /// cgroup, if it still had processes, would get no network at all from then on.
    ///
    /// `syscalls` are the numbers of the denied syscalls it was registered with, when known;
    /// otherwise the whole map is searched (entries of every sandbox: slower).
    pub fn unregister(&self, cgroup_id: u64, syscalls: Option<&[u32]>) -> Result<(), EbpfError> {
        // Every entry is tried, and the ring given back, whatever failed before it: the first
        // error is the one returned.
        let mut first = None;
        let mut keep = |result: Result<(), EbpfError>| {
            if let Err(e) = result {
                first.get_or_insert(e);
            }
        };
        keep(
            sys::bpf_map_delete(self.maps.sandboxes.as_fd(), &cgroup_id)
                .map_err(io("unregister the sandbox")),
        );
        let (lo, hi) = halves(cgroup_id);
        keep(delete_where::<abi::Dest4Key>(
            self.maps.dests4.as_fd(),
            |k| (k.cgroup_lo, k.cgroup_hi) == (lo, hi),
            "destinations",
        ));
        keep(delete_where::<abi::Dest6Key>(
            self.maps.dests6.as_fd(),
            |k| (k.cgroup_lo, k.cgroup_hi) == (lo, hi),
            "destinations",
        ));
        match syscalls {
            Some(nrs) => {
                let keys: Vec<abi::SyscallKey> =
                    nrs.iter().map(|&nr| syscall_key(cgroup_id, nr)).collect();
                keep(
                    sys::bpf_map_delete_all(self.maps.syscalls.as_fd(), &keys)
                        .map_err(io("remove the syscall rules")),
                );
            }
            None => keep(delete_where::<abi::SyscallKey>(
                self.maps.syscalls.as_fd(),
                |k| k.cgroup_id == cgroup_id,
                "syscall rules",
            )),
        }
        keep(
            sys::bpf_map_delete(self.maps.lost.as_fd(), &cgroup_id)
                .map_err(io("remove the sandbox's counts")),
        );
        // The ring and the audit switch under one hold of the lock.
        match lock(&self.dir) {
            Ok(locked) => {
                keep(self.release_rings(cgroup_id, &locked));
                keep(self.settle_audit(&locked));
            }
            Err(e) => keep(Err(e)),
        }
        first.map_or(Ok(()), Err)
    }

    /// Every cgroup id with entries in the maps. List these *before* the live cgroups that
    /// [`Kernel::sweep`] compares them with: a sandbox registered in between is then in
    /// neither list, rather than mistaken for a gone one.
    pub fn registered(&self) -> Result<Vec<u64>, EbpfError> {
        let mut ids: Vec<u64> =
            sys::bpf_map_keys(self.maps.lost.as_fd()).map_err(io("list sandboxes"))?;
        let owners = self.maps.ring_owners.as_fd();
        for slot in sys::bpf_map_keys::<u32>(owners).map_err(io("list ring buffers"))? {
            if let Some(id) = sys::bpf_map_lookup::<u32, u64>(owners, &slot)
                .map_err(io("look up a ring buffer's holder"))?
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Removes the entries of `registered` sandboxes whose cgroup is not `live` (gone, or a
    /// `cordon run` killed before it could clean up), and gives their rings back to the pool.
    pub fn sweep(&self, registered: &[u64], live: &[u64]) -> Result<usize, EbpfError> {
        let mut removed = 0;
        for &id in registered.iter().filter(|id| !live.contains(id)) {
            self.unregister(id, None)?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// Deletes every key of `map` that `ours` picks (the entries of one sandbox, found by a scan
/// of all sandboxes' keys), missing ones aside.
fn delete_where<K: abi::FromBytes + abi::IntoBytes + abi::Immutable + Copy>(
    map: BorrowedFd<'_>,
    ours: impl Fn(&K) -> bool,
    what: &str,
) -> Result<(), EbpfError> {
    let keys: Vec<K> = sys::bpf_map_keys::<K>(map)
        .map_err(io(format!("list {what}")))?
        .into_iter()
        .filter(|k| ours(k))
        .collect();
    sys::bpf_map_delete_all(map, &keys).map_err(io(format!("remove {what}")))
}

/// The key of a sandbox's rule for syscall `nr`.
fn syscall_key(cgroup_id: u64, nr: u32) -> abi::SyscallKey {
    abi::SyscallKey {
        cgroup_id,
        nr,
        pad: 0,
    }
}

/// Loads the object, attaches every program and pins maps and links under `dir`.
fn load(dir: &Path) -> Result<(), EbpfError> {
    let maps = dir.join("maps");
    let links = dir.join("links");
    for d in [&maps, &links] {
        std::fs::create_dir_all(d).map_err(io(format!("create {}", d.display())))?;
    }
    // A map of maps needs a template inner map at creation, which aya cannot pass: create
    // `rings` here and pin it where aya looks for pinned maps, so aya adopts it.
    let template = sys::bpf_map_create(
        bpf_map_type::BPF_MAP_TYPE_RINGBUF,
        0,
        0,
        abi::CORDON_RING_BYTES as u32,
        None,
    )
    .map_err(io("create a ring buffer"))?;
    let rings = sys::bpf_map_create(
        bpf_map_type::BPF_MAP_TYPE_ARRAY_OF_MAPS,
        4,
        4,
        abi::CORDON_MAX_SANDBOXES as u32,
        Some(&template),
    )
    .map_err(io("create the map of ring buffers"))?;
    sys::bpf_obj_pin(rings.as_fd(), &maps.join("rings"))
        .map_err(io("pin the map of ring buffers"))?;

    let mut ebpf = aya::EbpfLoader::new()
        .map_pin_path(&maps)
        .allow_unsupported_maps()
        .load(OBJECT)?;
    let parent = cgroup::sandboxes_dir()?;
    std::fs::create_dir_all(&parent).map_err(io(format!("create {}", parent.display())))?;
    let cgroup = std::fs::File::open(&parent).map_err(io(format!("open {}", parent.display())))?;
    for &(name, hook) in PROGRAMS {
        let program = ebpf
            .program_mut(name)
            .ok_or(EbpfError::MissingProgram(name))?;
        let loaded = match program {
            Program::CgroupSockAddr(p) => p.load(),
            Program::CgroupSock(p) => p.load(),
            Program::CgroupSkb(p) => p.load(),
            Program::RawTracePoint(p) => p.load(),
            _ => return Err(EbpfError::MissingProgram(name)),
        };
        loaded.map_err(|source| EbpfError::Program { name, source })?;
        let fd: BorrowedFd<'_> = program
            .fd()
            .map_err(|source| EbpfError::Program { name, source })?
            .as_fd();
        let link = match hook {
            Hook::Cgroup(attach) => sys::bpf_link_cgroup(fd, cgroup.as_fd(), attach),
            Hook::RawTracepoint(tp) => sys::bpf_raw_tracepoint_open(fd, tp),
        }
        .map_err(io(format!("attach {name}")))?;
        sys::bpf_obj_pin(link.as_fd(), &links.join(name))
            .map_err(io(format!("pin the link of {name}")))?;
    }
    Ok(())
}

/// The ids of the links pinned by other builds of Cordon under `base`.
fn other_builds_links(base: &Path, current: &Path, parent: u64) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p != current && p.is_dir())
        .flat_map(|build| {
            PROGRAMS
                .iter()
                .filter_map(move |(name, _)| {
                    links::pinned(&build.join("links").join(name), parent).ok()
                })
                .map(|(id, _)| id)
        })
        .collect()
}

/// Unpins the programs of other builds: their links go, and with them the old programs.
fn remove_other_builds(base: &Path, current: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path != current && path.is_dir() {
            if let Err(e) = std::fs::remove_dir_all(&path) {
                tracing::warn!(
                    "cannot remove the old eBPF programs at {}: {e}",
                    path.display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_has_every_program_the_loader_attaches() {
        let object = aya_obj::Object::parse(OBJECT).expect("the object parses");
        for (name, _) in PROGRAMS {
            assert!(
                object.programs.contains_key(*name),
                "{name} missing from cordon.bpf.o"
            );
        }
        assert_eq!(
            object.programs.len(),
            PROGRAMS.len(),
            "a program of cordon.bpf.o is never attached"
        );
    }

    #[test]
    fn the_tag_names_this_object() {
        let hash = OBJECT.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        assert_eq!(TAG, format!("{hash:016x}"));
    }
}

//! cgroup v2: one cgroup per sandbox, under `<cgroup2 mount>/cordon/`.
//!
//! The sandbox's init is created directly inside its cgroup (`clone3(CLONE_INTO_CGROUP)`),
//! so no process of the sandbox ever runs outside it. The cgroup is named after the profile
//! and the launching process (`coding-agent-12345`) so an operator can tell which sandbox it
//! is, and removed when the sandbox ends. Freezing and killing act on the whole cgroup
//! (`cgroup.freeze`, `cgroup.kill`). The hierarchy is looked for where it usually is,
//! `/sys/fs/cgroup` on plain systemd hosts and `/sys/fs/cgroup/unified` on hybrid ones (by
//! `statfs`), then in `/proc/self/mountinfo`.
//!
//! On a hybrid host cgroup v1 may hold the `pids` and `memory` controllers, which v2 then
//! cannot offer. A limit whose controller only v1 has gets a v1 cgroup of the same name
//! (`<v1 mount>/cordon/<name>`, `pids.max`, `memory.limit_in_bytes`). The launcher makes
//! those once the sandbox's init is forked, while init sets the sandbox up, and hands init
//! their `tasks` files with the word to start the command: the command's process joins them
//! before its exec, and what it starts inherits them. Making them before the fork would be
//! time every launch waits for. Init never joins them, so they are empty, and removed, as
//! soon as the command's last process is gone, while the kernel still tears init down; on
//! such a host `max_processes` and `max_memory` count the sandbox's processes and their
//! memory but not its init (on cgroup v2, where init is in the sandbox's cgroup, they count
//! init too).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Directory under the cgroup2 root that holds every sandbox's cgroup.
pub const PARENT: &str = "cordon";

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read {path}: {source}")]
    Mountinfo { path: PathBuf, source: io::Error },
    #[error("no cgroup2 file system is mounted (looked in {0})")]
    NotMounted(PathBuf),
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{path} still has processes after {waited:?}")]
    Busy { path: PathBuf, waited: Duration },
}

/// The extended attribute of a sandbox cgroup's directory that names its session.
const SESSION_XATTR: &std::ffi::CStr = c"trusted.cordon.session";
/// The uid the sandbox runs as (see [`SandboxCgroup::set_owner`]).
const OWNER_XATTR: &std::ffi::CStr = c"trusted.cordon.uid";
/// What the session was launched with (the launch record, `cordon::evidence::LaunchRecord`),
/// for the evidence a responder collects.
const LAUNCH_XATTR: &std::ffi::CStr = c"trusted.cordon.launch";

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CgroupError {
    let path = path.to_path_buf();
    move |source| CgroupError::Io { what, path, source }
}

/// Where a file system of type `fstype` is mounted, from a mountinfo file
/// (`/proc/self/mountinfo`); `Ok(None)` when none is.
pub fn mount_point(mountinfo: &Path, fstype: &str) -> Result<Option<PathBuf>, CgroupError> {
    let text = std::fs::read_to_string(mountinfo).map_err(|source| CgroupError::Mountinfo {
        path: mountinfo.to_path_buf(),
        source,
    })?;
    Ok(mount_point_in(&text, fstype))
}

/// [`mount_point`] in this process's `/proc/self/mountinfo` (see [`in_host_mountinfo`]).
pub fn host_mount_point(fstype: &str) -> Result<Option<PathBuf>, CgroupError> {
    // Where the file system usually is, asked of the kernel with one `statfs` each before
    // mountinfo is read and parsed (at every launch, in a `cordon run`).
    if let Some(usual) = usual_mount_point(fstype) {
        return Ok(Some(usual));
    }
    in_host_mountinfo(|text| mount_point_in(text, fstype))
}

/// What `find` finds in this process's `/proc/self/mountinfo`. The text is kept: a launch
/// looks up to four mounts in it (cgroup v2 and bpffs when not in their usual places, the
/// v1 hierarchies of the limits, when it makes its cgroups and when it sweeps), and the
/// kernel formats every mount for each read. What the kept text lacks is looked for in a
/// fresh read (it may have been mounted since, as `ebpf::bpffs` does in a long-running
/// cordond).
fn in_host_mountinfo<T>(find: impl Fn(&str) -> Option<T>) -> Result<Option<T>, CgroupError> {
    static TEXT: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let mut text = TEXT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(found) = text.as_deref().and_then(&find) {
        return Ok(Some(found));
    }
    let path = Path::new("/proc/self/mountinfo");
    let read = crate::sys::read_proc(path).map_err(|source| CgroupError::Mountinfo {
        path: path.to_path_buf(),
        source,
    })?;
    let found = find(&read);
    *text = Some(read);
    Ok(found)
}

/// The first of the usual places for `fstype` where a file system of that type is mounted.
fn usual_mount_point(fstype: &str) -> Option<PathBuf> {
    use nix::sys::statfs::{statfs, BPF_FS_MAGIC, CGROUP2_SUPER_MAGIC};
    let (places, magic): (&[&str], _) = match fstype {
        // A hybrid host (cgroup v1 beside v2) has v2 at `unified`, under a tmpfs.
        "cgroup2" => (
            &["/sys/fs/cgroup", "/sys/fs/cgroup/unified"],
            CGROUP2_SUPER_MAGIC,
        ),
        "bpf" => (&["/sys/fs/bpf"], BPF_FS_MAGIC),
        _ => return None,
    };
    places
        .iter()
        .find(|p| statfs(**p).is_ok_and(|s| s.filesystem_type() == magic))
        .map(PathBuf::from)
}

fn mount_point_in(text: &str, fstype: &str) -> Option<PathBuf> {
    text.lines()
        .find_map(|line| {
            // "36 25 0:30 / /sys/fs/cgroup rw,... shared:9 - cgroup2 cgroup2 rw"
            let (fields, after) = line.split_once(" - ")?;
            let found = after.split(' ').next()?;
            (found == fstype).then(|| fields.split(' ').nth(4).map(unescape))?
        })
        .map(PathBuf::from)
}

/// Where cgroup v2 is mounted, from a mountinfo file (`/proc/self/mountinfo`).
pub fn find_mount(mountinfo: &Path) -> Result<PathBuf, CgroupError> {
    mount_point(mountinfo, "cgroup2")?
        .ok_or_else(|| CgroupError::NotMounted(mountinfo.to_path_buf()))
}

/// Where cgroup v2 is mounted on this host.
pub fn host_mount() -> Result<PathBuf, CgroupError> {
    host_mount_point("cgroup2")?
        .ok_or_else(|| CgroupError::NotMounted(PathBuf::from("/proc/self/mountinfo")))
}

/// `<cgroup2>/cordon`: the parent of every sandbox's cgroup, where the eBPF programs attach.
pub fn sandboxes_dir() -> Result<PathBuf, CgroupError> {
    Ok(host_mount()?.join(PARENT))
}

/// The controllers the cgroup v2 hierarchy at `root` offers (`cgroup.controllers`): on a
/// hybrid host, the ones cgroup v1 does not hold.
pub fn controllers(root: &Path) -> Result<Vec<String>, CgroupError> {
    let path = root.join("cgroup.controllers");
    let text = std::fs::read_to_string(&path).map_err(io_err("read", &path))?;
    Ok(text.split_whitespace().map(String::from).collect())
}

/// Where cgroup v1 mounts the hierarchy that holds `controller`, from a mountinfo text.
fn v1_mount_in(text: &str, controller: &str) -> Option<PathBuf> {
    text.lines()
        .find_map(|line| {
            // "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory"
            let (fields, after) = line.split_once(" - ")?;
            let mut after = after.split(' ');
            (after.next()? == "cgroup").then_some(())?;
            let options = after.nth(1)?;
            options
                .split(',')
                .any(|o| o == controller)
                .then(|| fields.split(' ').nth(4).map(unescape))?
        })
        .map(PathBuf::from)
}

/// Where this host's cgroup v1 mounts the hierarchy that holds `controller`, if it does.
pub fn host_v1_mount(controller: &str) -> Result<Option<PathBuf>, CgroupError> {
    in_host_mountinfo(|text| v1_mount_in(text, controller))
}

/// Where a limit is enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// By the cgroup v2 hierarchy the sandbox's cgroup is in.
    V2,
    /// By the cgroup v1 hierarchy mounted here (a hybrid host).
    V1(PathBuf),
}

/// Where one limit of a sandbox can be enforced on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub controller: &'static str,
    /// The profile field that asks for it.
    pub field: &'static str,
    /// `None`: nowhere.
    pub at: Option<Hierarchy>,
}

/// Resource limits of one sandbox.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// `pids.max`
    pub processes: Option<u32>,
    /// `memory.max`, in bytes
    pub memory: Option<u64>,
}

impl Limits {
    /// Where this host can enforce each limit.
    pub fn placement(&self, v2_root: &Path) -> Result<Vec<Placement>, CgroupError> {
        let offered = controllers(v2_root)?;
        let mut out = Vec::new();
        for (controller, field) in self.needs() {
            let at = if offered.iter().any(|o| o == controller) {
                Some(Hierarchy::V2)
            } else {
                host_v1_mount(controller)?.map(Hierarchy::V1)
            };
            out.push(Placement {
                controller,
                field,
                at,
            });
        }
        Ok(out)
    }

    /// The controller each limit needs, with the profile field that asks for it.
    pub fn needs(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        if self.processes.is_some() {
            out.push(("pids", "max_processes"));
        }
        if self.memory.is_some() {
            out.push(("memory", "max_memory"));
        }
        out
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            let octal = digits.iter().all(|d| (b'0'..=b'7').contains(d));
            if let Some(v) = octal
                .then(|| u8::from_str_radix(&field[i + 1..i + 4], 8).ok())
                .flatten()
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A sandbox's cgroup; [`SandboxCgroup::remove`] kills what is left in it and removes it.
#[derive(Debug)]
pub struct SandboxCgroup {
    path: PathBuf,
    dir: OwnedFd,
    /// cgroup v1 cgroups holding the limits v2 cannot (see the module docs).
    v1: Vec<PathBuf>,
    /// The controllers of `limits` that v2 does not offer here: [`SandboxCgroup::limit_in_v1`]
    /// makes their v1 cgroups.
    v1_needed: Vec<&'static str>,
    limits: Limits,
}

impl SandboxCgroup {
    /// Creates `<root>/cordon/<name>` with `limits`; only controllers the hierarchy offers
    /// (see [`controllers`]) are used, the caller decides what a missing one means. The
    /// limits only cgroup v1 offers are set by [`SandboxCgroup::limit_in_v1`].
    pub fn create(root: &Path, name: &str, limits: &Limits) -> Result<Self, CgroupError> {
        let parent = root.join(PARENT);
        match std::fs::create_dir(&parent) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create", &parent)(e)),
        }
        let offered = controllers(root)?;
        let used: Vec<&str> = limits
            .needs()
            .into_iter()
            .map(|(controller, _)| controller)
            .filter(|c| offered.iter().any(|o| o == c))
            .collect();
        // A controller reaches a cgroup only when every ancestor enables it for its children.
        for dir in [root, parent.as_path()] {
            for controller in &used {
                let control = dir.join("cgroup.subtree_control");
                std::fs::write(&control, format!("+{controller}"))
                    .map_err(io_err("write", &control))?;
            }
        }
        let path = parent.join(name);
        std::fs::create_dir(&path).map_err(io_err("create", &path))?;
        let dir = File::open(&path).map_err(io_err("open", &path))?.into();
        let cgroup = Self {
            path,
            dir,
            v1: Vec::new(),
            v1_needed: limits
                .needs()
                .into_iter()
                .map(|(controller, _)| controller)
                .filter(|c| !used.contains(c))
                .collect(),
            limits: *limits,
        };
        let apply = || -> Result<(), CgroupError> {
            if let (Some(max), true) = (limits.processes, used.contains(&"pids")) {
                cgroup.write("pids.max", &max.to_string())?;
            }
            if let (Some(max), true) = (limits.memory, used.contains(&"memory")) {
                cgroup.write("memory.max", &max.to_string())?;
                // Past the limit the sandbox is reclaimed or killed, not pushed into swap.
                if cgroup.path.join("memory.swap.max").exists() {
                    cgroup.write("memory.swap.max", "0")?;
                }
            }
            Ok(())
        };
        if let Err(e) = apply() {
            let _ = std::fs::remove_dir(&cgroup.path);
            return Err(e);
        }
        Ok(cgroup)
    }

    /// Makes the cgroup v1 cgroups, of the sandbox's name, that hold the limits cgroup v2
    /// does not offer on this host (see the module docs), and returns their `tasks` files,
    /// open for writing, for the command's process to join them before its exec: it writes
    /// `0` to each, which moves the writing thread alone (the process has no other) and so
    /// takes no global lock, where moving a process by its pid (`cgroup.procs`) waits for
    /// an RCU grace period when no other move did just before (11 ms on this machine, one
    /// launch in five).
    /// Made after the fork, beside init's setup, rather than before it. On an error, the v1
    /// cgroups made so far are kept for [`SandboxCgroup::remove`].
    pub fn limit_in_v1(&mut self) -> Result<Vec<File>, CgroupError> {
        let mut tasks = Vec::new();
        if self.v1_needed.is_empty() {
            return Ok(tasks);
        }
        let name = self.name();
        for controller in self.v1_needed.clone() {
            let Some(mount) = host_v1_mount(controller)? else {
                continue;
            };
            let parent = mount.join(PARENT);
            match std::fs::create_dir(&parent) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("create", &parent)(e)),
            }
            let dir = parent.join(&name);
            std::fs::create_dir(&dir).map_err(io_err("create", &dir))?;
            self.v1.push(dir.clone());
            let write = |file: &str, value: &str| {
                let path = dir.join(file);
                std::fs::write(&path, value).map_err(io_err("write", &path))
            };
            match (controller, self.limits.processes, self.limits.memory) {
                ("pids", Some(max), _) => write("pids.max", &max.to_string())?,
                ("memory", _, Some(max)) => {
                    write("memory.limit_in_bytes", &max.to_string())?;
                    // Memory and swap together, where swap is accounted: no swap.
                    if dir.join("memory.memsw.limit_in_bytes").exists() {
                        write("memory.memsw.limit_in_bytes", &max.to_string())?;
                    }
                }
                _ => {}
            }
            let path = dir.join("tasks");
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err("open", &path))?;
            tasks.push(file);
        }
        Ok(tasks)
    }

    /// An existing sandbox's cgroup, by its directory (for responders' actions).
    pub fn open(path: &Path) -> Result<Self, CgroupError> {
        let dir = File::open(path).map_err(io_err("open", path))?.into();
        Ok(Self {
            path: path.to_path_buf(),
            dir,
            v1: Vec::new(),
            v1_needed: Vec::new(),
            limits: Limits::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cgroup's id, as `bpf_get_current_cgroup_id()` returns it for its processes: the
    /// inode number of its directory.
    pub fn id(&self) -> Result<u64, CgroupError> {
        let stat =
            nix::sys::stat::fstat(&self.dir).map_err(|e| io_err("stat", &self.path)(e.into()))?;
        Ok(stat.st_ino)
    }

    /// The cgroup's name: the sandbox's name (`coding-agent-12345-0`).
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The cgroup's directory, for `clone3(CLONE_INTO_CGROUP)`.
    pub fn fd(&self) -> &OwnedFd {
        &self.dir
    }

    /// The cgroup's path as processes inside see it in `/proc/self/cgroup` (`/cordon/NAME`).
    pub fn relative(&self) -> PathBuf {
        Path::new("/")
            .join(PARENT)
            .join(self.path.file_name().unwrap_or_default())
    }

    fn write(&self, file: &str, value: &str) -> Result<(), CgroupError> {
        let path = self.path.join(file);
        std::fs::write(&path, value).map_err(io_err("write", &path))
    }

    /// Stops every process (`cgroup.freeze`); their state is kept for inspection.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        self.write("cgroup.freeze", "1")
    }

    pub fn thaw(&self) -> Result<(), CgroupError> {
        self.write("cgroup.freeze", "0")
    }

    /// Whether `cgroup.events` holds the line `line` (`frozen 1`, `populated 1`).
    fn event(&self, line: &str) -> Result<bool, CgroupError> {
        let path = self.path.join("cgroup.events");
        let events = std::fs::read_to_string(&path).map_err(io_err("read", &path))?;
        Ok(events.lines().any(|l| l == line))
    }

    /// Names the session running in the cgroup (a `trusted.` extended attribute of its
    /// directory: only root in the host's user namespace can set one, and the sandbox does
    /// not see its cgroup's directory at all).
    pub fn set_session(&self, session: uuid::Uuid) -> Result<(), CgroupError> {
        self.set_attr(SESSION_XATTR, session.to_string(), "name the session of")
    }

    /// The session running in the cgroup, when one was named.
    pub fn session(&self) -> Option<uuid::Uuid> {
        self.attr(SESSION_XATTR)?.parse().ok()
    }

    /// Records whose sandbox it is (the uid it runs as), the same way as its session: the
    /// user may list and kill their own through cordond.
    pub fn set_owner(&self, uid: u32) -> Result<(), CgroupError> {
        self.set_attr(OWNER_XATTR, uid.to_string(), "record the owner of")
    }

    /// The uid whose sandbox it is, when recorded.
    pub fn owner(&self) -> Option<u32> {
        self.attr(OWNER_XATTR)?.parse().ok()
    }

    /// Records what the session was launched with (see `cordon::evidence`), the same way.
    pub fn set_launch_record(&self, record: &[u8]) -> Result<(), CgroupError> {
        self.set_attr(LAUNCH_XATTR, record, "record the launch of")
    }

    /// What the session was launched with, as recorded.
    pub fn launch_record(&self) -> Option<Vec<u8>> {
        // SAFETY: as in `set_attr`; a null buffer asks only for the value's size.
        let size = unsafe {
            libc::fgetxattr(
                self.dir.as_raw_fd(),
                LAUNCH_XATTR.as_ptr(),
                std::ptr::null_mut(),
                0,
            )
        };
        let mut value = vec![0u8; usize::try_from(size).ok()?];
        // SAFETY: as in `attr`; the kernel writes at most `value.len()` bytes.
        let len = unsafe {
            libc::fgetxattr(
                self.dir.as_raw_fd(),
                LAUNCH_XATTR.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        value.truncate(usize::try_from(len).ok()?);
        Some(value)
    }

    fn set_attr(
        &self,
        name: &std::ffi::CStr,
        value: impl AsRef<[u8]>,
        what: &'static str,
    ) -> Result<(), CgroupError> {
        let value = value.as_ref();
        // SAFETY: the descriptor is the cgroup's open directory; name and value are valid
        // for the call, the value's length is given.
        let ret = unsafe {
            libc::fsetxattr(
                self.dir.as_raw_fd(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if ret < 0 {
            return Err(io_err(what, &self.path)(io::Error::last_os_error()));
        }
        Ok(())
    }

    fn attr(&self, name: &std::ffi::CStr) -> Option<String> {
        let mut value = [0u8; 64];
        // SAFETY: as in `set_attr`; the kernel writes at most `value.len()` bytes.
        let len = unsafe {
            libc::fgetxattr(
                self.dir.as_raw_fd(),
                name.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        let len = usize::try_from(len).ok()?;
        Some(std::str::from_utf8(value.get(..len)?).ok()?.to_string())
    }

    /// Whether the kernel reports the cgroup as frozen.
    pub fn is_frozen(&self) -> Result<bool, CgroupError> {
        self.event("frozen 1")
    }

    /// Kills every process in the cgroup (`cgroup.kill`).
    pub fn kill(&self) -> Result<(), CgroupError> {
        self.write("cgroup.kill", "1")
    }

    /// Whether any process is left in the cgroup.
    pub fn is_populated(&self) -> Result<bool, CgroupError> {
        self.event("populated 1")
    }

    /// Kills what is left, waits for it to be gone and removes the cgroup.
    pub fn remove(mut self) -> Result<(), CgroupError> {
        // Empty already, as at the end of every run whose init was reaped: nothing can enter
        // an empty cgroup but by being moved there, which only root can do.
        if self.is_populated()? {
            self.kill()?;
            let waited = Duration::from_secs(5);
            let deadline = Instant::now() + waited;
            while self.is_populated()? {
                if Instant::now() > deadline {
                    return Err(CgroupError::Busy {
                        path: self.path.clone(),
                        waited,
                    });
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        // Its processes are gone, so its v1 cgroups are empty too.
        let v1 = self.remove_v1();
        let v2 = std::fs::remove_dir(&self.path).map_err(io_err("remove", &self.path));
        v1.and(v2)
    }

    /// Removes the v1 cgroups of the limits, which only the command's processes join (see
    /// `sys::ExecPlan::join`): once those are gone, even while init still ends. Each is
    /// removed even when another cannot be; the first failure is returned, and what could
    /// not be removed is tried again by [`SandboxCgroup::remove`] (then by a sweep).
    pub fn remove_v1(&mut self) -> Result<(), CgroupError> {
        let mut first = Ok(());
        self.v1.retain(|dir| match std::fs::remove_dir(dir) {
            Ok(()) => false,
            Err(e) => {
                if first.is_ok() {
                    first = Err(io_err("remove", dir)(e));
                }
                true
            }
        });
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_on_a_hybrid_and_a_unified_host() {
        let dir = tempfile::tempdir().unwrap();
        let hybrid = dir.path().join("hybrid");
        std::fs::write(
            &hybrid,
            "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
             35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
        )
        .unwrap();
        assert_eq!(
            find_mount(&hybrid).unwrap(),
            Path::new("/sys/fs/cgroup/unified")
        );
        let unified = dir.path().join("unified");
        std::fs::write(
            &unified,
            "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
        )
        .unwrap();
        assert_eq!(find_mount(&unified).unwrap(), Path::new("/sys/fs/cgroup"));
        let none = dir.path().join("none");
        std::fs::write(&none, "22 1 0:21 / /proc rw - proc proc rw\n").unwrap();
        assert!(matches!(find_mount(&none), Err(CgroupError::NotMounted(_))));
    }

    #[test]
    fn a_v1_hierarchy_is_found_by_its_controller() {
        let text = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n\
                    36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            v1_mount_in(text, "pids"),
            Some(PathBuf::from("/sys/fs/cgroup/pids"))
        );
        assert_eq!(
            v1_mount_in(text, "cpuacct"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(v1_mount_in(text, "blkio"), None);
    }

    #[test]
    fn the_usual_place_found_is_where_mountinfo_says_the_file_system_is() {
        let text = crate::sys::read_proc(Path::new("/proc/self/mountinfo")).unwrap();
        let mounted_at = |fstype: &str| -> Vec<PathBuf> {
            text.lines()
                .filter_map(|line| {
                    let (fields, after) = line.split_once(" - ")?;
                    (after.split(' ').next()? == fstype)
                        .then(|| fields.split(' ').nth(4).map(|p| PathBuf::from(unescape(p))))?
                })
                .collect()
        };
        // The first usual place mountinfo lists with that file system. This machine (and
        // CI's) has cgroup v2 at /sys/fs/cgroup/unified, under a tmpfs at /sys/fs/cgroup: the
        // first usual place holds another file system and is passed over.
        let expected = |fstype: &str, usual: &[&str]| {
            let mounts = mounted_at(fstype);
            usual.iter().map(PathBuf::from).find(|p| mounts.contains(p))
        };
        assert_eq!(
            usual_mount_point("cgroup2"),
            expected("cgroup2", &["/sys/fs/cgroup", "/sys/fs/cgroup/unified"])
        );
        assert_eq!(usual_mount_point("bpf"), expected("bpf", &["/sys/fs/bpf"]));
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(unescape("/mnt/with\\040space"), "/mnt/with space");
        assert_eq!(unescape("/plain"), "/plain");
    }
}

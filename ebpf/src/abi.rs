//! The Rust mirror of `ebpf/cordon.h`: the same structs, `#[repr(C)]`, each checked at compile
//! time against the sizes and offsets the header states (and the C compiler checks too).
//! The numbers come from the header through the build script; none is copied here.

#![allow(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/abi_consts.rs"));

pub use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use std::mem::{offset_of, size_of};
use std::os::unix::ffi::OsStrExt as _;

// Every struct below is `#[repr(C)]`, made of integers and integer arrays with explicit
// padding fields: zerocopy's derives check at compile time that there is no other padding
// and that every bit pattern is a value, so they can be handed to and read from the kernel
// as bytes without an `unsafe` of our own.

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Sandbox {
    pub flags: u32,
    pub dns_port4: u16,
    pub dns_port6: u16,
    /// The slot of `rings` holding the sandbox's ring buffer.
    pub ring: u32,
}

/// What the kernel side counts for a sandbox (`struct cordon_counts`, the value of `lost`).
#[repr(C)]
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Counts {
    /// Records the sandbox's ring had no room for.
    pub lost: u64,
    /// When the next missing-path record is due (the kernel's rate limit).
    pub miss_due_ns: u64,
    /// Missing-path records let go unexamined above the rate.
    pub unexamined: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
    pub protos: u8,
    pub pad: [u8; 3],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Dest4Key {
    pub prefixlen: u32,
    pub cgroup_lo: u32,
    pub cgroup_hi: u32,
    pub addr: [u8; 4],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Dest6Key {
    pub prefixlen: u32,
    pub cgroup_lo: u32,
    pub cgroup_hi: u32,
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Dest {
    pub expires_ns: u64,
    pub nranges: u32,
    /// `CORDON_DEST_*`.
    pub flags: u32,
    pub ranges: [PortRange; CORDON_MAX_PORT_RANGES],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SyscallKey {
    pub cgroup_id: u64,
    pub nr: u32,
    pub pad: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SyscallCondition {
    pub op: u32,
    pub arg: u32,
    pub mask: u64,
    pub nvalues: u32,
    pub pad: u32,
    pub values: [u64; CORDON_MAX_ARG_VALUES],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct SyscallRule {
    pub errno_value: i32,
    pub nconditions: u32,
    pub conditions: [SyscallCondition; CORDON_MAX_ARG_CONDITIONS],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct DnsOrigin {
    pub addr: [u8; 16],
    pub port: u16,
    pub family: u16,
    pub pad: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Net {
    pub family: u16,
    pub port: u16,
    pub proto: u8,
    pub reason: u8,
    pub pad: [u8; 2],
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Syscall {
    pub nr: i64,
    pub ret: i64,
    pub args: [u64; 6],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Exec {
    pub filename: [u8; CORDON_EXE_LEN],
}

#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Fork {
    pub child_pid: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Exit {
    pub exit_code: u32,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct File {
    pub nr: i32,
    pub ret: i32,
    pub dirfd: i32,
    pub flags: u32,
    pub dir_parts: u16,
    pub dir_placed: u8,
    pub truncated: u8,
    /// The bytes of the path that follow, its NUL included.
    pub path_len: u32,
    pub dir: [u8; CORDON_FILE_DIR_LEN],
}

impl File {
    /// The path of a file error's record, `payload` being the record past its header: the
    /// bytes after the fixed part, up to the NUL (or the end).
    pub fn path<'a>(&self, payload: &'a [u8]) -> &'a [u8] {
        let after = payload.get(CORDON_FILE_OFF_PATH..).unwrap_or_default();
        let len = (self.path_len as usize).min(after.len());
        let path = &after[..len];
        let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
        &path[..end]
    }

    /// The directory a relative path started from, as the kernel read it at the call
    /// (`/tmp/lw`); `None` when it could not be read whole.
    pub fn dir(&self) -> Option<std::path::PathBuf> {
        (usize::from(self.dir_placed) == CORDON_DIR_START)
            .then(|| self.names())
            .flatten()
    }

    /// The file a successful open or exec of an audited sandbox reached, its path as the
    /// kernel walked it up to the sandbox's root; `None` when it could not be read whole.
    pub fn object(&self) -> Option<std::path::PathBuf> {
        (usize::from(self.dir_placed) == CORDON_DIR_OBJECT)
            .then(|| self.names())
            .flatten()
    }

    /// The names in `dir`, from the last up, as a path.
    fn names(&self) -> Option<std::path::PathBuf> {
        let names: Vec<&[u8]> = self
            .dir
            .split(|&b| b == 0)
            .take(self.dir_parts as usize)
            .collect();
        // Fewer names than counted: not a record the program writes.
        if names.len() != self.dir_parts as usize || names.iter().any(|n| n.is_empty()) {
            return None;
        }
        let mut dir = std::path::PathBuf::from("/");
        for name in names.into_iter().rev() {
            dir.push(std::ffi::OsStr::from_bytes(name));
        }
        Some(dir)
    }
}

/// The header of a ring-buffer record; the payload that follows depends on `kind`.
#[repr(C)]
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct EventHeader {
    pub time_ns: u64,
    pub cgroup_id: u64,
    pub kind: u32,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    /// `CORDON_RECORD_*`: a record of what was let through (audit), of a call that succeeded.
    pub flags: u32,
    pub comm: [u8; 16],
}

/// The largest payload of `struct cordon_event`'s union.
const PAYLOAD_SIZE: usize = CORDON_EVENT_SIZE - CORDON_EVENT_OFF_PAYLOAD;

const _: () = {
    assert!(size_of::<Sandbox>() == CORDON_SANDBOX_SIZE);
    assert!(cordon_policy::policy::MAX_PORT_RANGES == CORDON_MAX_PORT_RANGES);
    assert!(offset_of!(Sandbox, dns_port4) == CORDON_SANDBOX_OFF_DNS_PORT4);
    assert!(offset_of!(Sandbox, ring) == CORDON_SANDBOX_OFF_RING);
    assert!(size_of::<Counts>() == CORDON_COUNTS_SIZE);
    assert!(size_of::<PortRange>() == CORDON_PORT_RANGE_SIZE);
    assert!(size_of::<Dest4Key>() == CORDON_DEST4_KEY_SIZE);
    assert!(size_of::<Dest6Key>() == CORDON_DEST6_KEY_SIZE);
    assert!(size_of::<Dest>() == CORDON_DEST_SIZE);
    assert!(offset_of!(Dest, ranges) == CORDON_DEST_OFF_RANGES);
    assert!(size_of::<SyscallKey>() == CORDON_SYSCALL_KEY_SIZE);
    assert!(size_of::<SyscallCondition>() == CORDON_SYSCALL_CONDITION_SIZE);
    assert!(size_of::<SyscallRule>() == CORDON_SYSCALL_RULE_SIZE);
    assert!(size_of::<DnsOrigin>() == CORDON_DNS_ORIGIN_SIZE);
    assert!(size_of::<EventHeader>() == CORDON_EVENT_OFF_PAYLOAD);
    assert!(offset_of!(EventHeader, cgroup_id) == CORDON_EVENT_OFF_CGROUP_ID);
    assert!(offset_of!(EventHeader, kind) == CORDON_EVENT_OFF_KIND);
    assert!(offset_of!(EventHeader, ppid) == CORDON_EVENT_OFF_PPID);
    assert!(offset_of!(EventHeader, comm) == CORDON_EVENT_OFF_COMM);
    assert!(offset_of!(Net, addr) == CORDON_NET_OFF_ADDR);
    assert!(offset_of!(Syscall, args) == CORDON_SYSCALL_OFF_ARGS);
    assert!(size_of::<Net>() <= PAYLOAD_SIZE);
    assert!(size_of::<Syscall>() <= PAYLOAD_SIZE);
    assert!(size_of::<Exec>() == PAYLOAD_SIZE);
    assert!(offset_of!(File, dir) == CORDON_FILE_OFF_DIR);
    assert!(size_of::<File>() == CORDON_FILE_OFF_PATH);
};

/// One ring-buffer record, split into its header and the payload bytes (the rest of the
/// record: a file error's is larger than the others').
pub fn split_event(record: &[u8]) -> Option<(EventHeader, &[u8])> {
    if record.len() < CORDON_EVENT_SIZE {
        return None;
    }
    let header = EventHeader::read_from_prefix(record).ok()?.0;
    Some((header, &record[CORDON_EVENT_OFF_PAYLOAD..]))
}

/// The bytes of a NUL-terminated C string field, without the NUL.
pub fn c_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with_dir(names: &[u8], parts: u16) -> File {
        let mut file = File::new_zeroed();
        file.dir[..names.len()].copy_from_slice(names);
        file.dir_parts = parts;
        file.dir_placed = 1;
        file
    }

    #[test]
    fn the_directory_is_read_from_its_names_last_first() {
        let file = file_with_dir(b"lw\0tmp\0", 2);
        assert_eq!(file.dir(), Some(std::path::PathBuf::from("/tmp/lw")));
        assert_eq!(
            file_with_dir(b"", 0).dir(),
            Some(std::path::PathBuf::from("/")),
            "the root"
        );
        let mut unplaced = file_with_dir(b"lw\0tmp\0", 2);
        unplaced.dir_placed = 0;
        assert_eq!(unplaced.dir(), None, "not read whole");
        assert_eq!(
            file_with_dir(b"lw\0", 3).dir(),
            None,
            "fewer names than counted"
        );
    }
}

#[cfg(test)]
mod path_tests {
    use super::*;

    #[test]
    fn the_path_is_read_to_its_length_and_nul() {
        let mut file = File::new_zeroed();
        let mut payload = vec![0u8; CORDON_FILE_OFF_PATH];
        payload.extend_from_slice(b"/etc/shadow\0junk");
        file.path_len = 12;
        assert_eq!(file.path(&payload), b"/etc/shadow");
        file.path_len = 4000;
        assert_eq!(
            file.path(&payload),
            b"/etc/shadow",
            "no further than the record"
        );
        assert_eq!(file.path(&payload[..10]), b"", "a record cut short");
    }
}

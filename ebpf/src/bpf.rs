//! The `bpf(2)` commands Cordon makes itself, beside aya: aya 0.13 loads and attaches the
//! programs, but has no typed access to a map it did not load (the maps of maps' inner
//! rings, the pins an earlier run left), no `BPF_NOEXIST` insert, no link iteration by id
//! and no detach of a link it does not own. Each wrapper is one command with a zeroed
//! attribute; every `unsafe` block of this crate is here, each with the reason it is sound.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use zerocopy::{FromBytes, Immutable, IntoBytes};

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// `bpf(2)` with an attribute the caller filled in; returns the non-negative result.
fn bpf(
    cmd: aya_obj::generated::bpf_cmd,
    attr: &mut aya_obj::generated::bpf_attr,
) -> io::Result<i64> {
    // SAFETY: `attr` is a valid, fully initialized bpf_attr (callers start from zeroed) of
    // the size we pass; the kernel reads it and, for some commands, writes results into it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut aya_obj::generated::bpf_attr,
            std::mem::size_of::<aya_obj::generated::bpf_attr>(),
        )
    };
    check(ret)
}

fn zeroed_attr() -> aya_obj::generated::bpf_attr {
    // SAFETY: bpf_attr is a union of plain integer structs; all-zero is the value the kernel
    // expects in every field a command does not use.
    unsafe { std::mem::zeroed() }
}

fn new_fd(ret: i64) -> OwnedFd {
    // SAFETY: the bpf command returned a new descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(ret as i32) }
}

/// Creates a BPF map (`BPF_MAP_CREATE`); `inner` is the template map of a map of maps.
pub fn bpf_map_create(
    map_type: aya_obj::generated::bpf_map_type,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    inner: Option<&OwnedFd>,
) -> io::Result<OwnedFd> {
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integers into the MAP_CREATE member of a zeroed union.
    unsafe {
        let create = &mut attr.__bindgen_anon_1;
        create.map_type = map_type as u32;
        create.key_size = key_size;
        create.value_size = value_size;
        create.max_entries = max_entries;
        create.inner_map_fd = inner.map_or(0, |fd| fd.as_raw_fd() as u32);
    }
    bpf(aya_obj::generated::bpf_cmd::BPF_MAP_CREATE, &mut attr).map(new_fd)
}

/// Sets `key` to `value` in a map (`BPF_MAP_UPDATE_ELEM`, any flag).
pub fn bpf_map_update<K: IntoBytes + Immutable, V: IntoBytes + Immutable>(
    map: std::os::fd::BorrowedFd<'_>,
    key: &K,
    value: &V,
) -> io::Result<()> {
    map_update(map, key, value, aya_obj::generated::BPF_ANY)
}

/// Inserts `key` with `value` unless the map has the key already (`BPF_NOEXIST`): true when
/// this call inserted it. Atomic, so processes can claim keys without another lock.
pub fn bpf_map_insert<K: IntoBytes + Immutable, V: IntoBytes + Immutable>(
    map: std::os::fd::BorrowedFd<'_>,
    key: &K,
    value: &V,
) -> io::Result<bool> {
    match map_update(map, key, value, aya_obj::generated::BPF_NOEXIST) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

fn map_update<K: IntoBytes + Immutable, V: IntoBytes + Immutable>(
    map: std::os::fd::BorrowedFd<'_>,
    key: &K,
    value: &V,
    flags: u32,
) -> io::Result<()> {
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integers into the element member of a zeroed union; `key` and
    // `value` outlive the call, and the map's key and value sizes are the sizes of K and V.
    unsafe {
        let elem = &mut attr.__bindgen_anon_2;
        elem.map_fd = map.as_raw_fd() as u32;
        elem.key = key as *const K as u64;
        elem.__bindgen_anon_1.value = value as *const V as u64;
        elem.flags = u64::from(flags);
    }
    bpf(aya_obj::generated::bpf_cmd::BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
}

/// Opens the map with kernel id `id` (`BPF_MAP_GET_FD_BY_ID`): what a lookup in a map of
/// maps returns to user space.
pub fn bpf_map_get_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_6.__bindgen_anon_1.map_id = id;
    bpf(aya_obj::generated::bpf_cmd::BPF_MAP_GET_FD_BY_ID, &mut attr).map(new_fd)
}

/// Pins a BPF object (map, program, link) at `path` on a bpffs (`BPF_OBJ_PIN`).
pub fn bpf_obj_pin(fd: std::os::fd::BorrowedFd<'_>, path: &Path) -> io::Result<()> {
    let path = cstring(path)?;
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integers into the OBJ_PIN member of a zeroed union; `path`
    // outlives the call.
    unsafe {
        let pin = &mut attr.__bindgen_anon_4;
        pin.pathname = path.as_ptr() as u64;
        pin.bpf_fd = fd.as_raw_fd() as u32;
    }
    bpf(aya_obj::generated::bpf_cmd::BPF_OBJ_PIN, &mut attr).map(drop)
}

/// Opens the BPF object pinned at `path` (`BPF_OBJ_GET`).
pub fn bpf_obj_get(path: &Path) -> io::Result<OwnedFd> {
    let path = cstring(path)?;
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_4.pathname = path.as_ptr() as u64;
    bpf(aya_obj::generated::bpf_cmd::BPF_OBJ_GET, &mut attr).map(new_fd)
}

/// Attaches a loaded program to a cgroup with a BPF link (`BPF_LINK_CREATE`): the program
/// stays attached as long as the link lives, pinned or held open. Links to one cgroup stack
/// (every program must allow), and they apply to every descendant cgroup.
pub fn bpf_link_cgroup(
    program: std::os::fd::BorrowedFd<'_>,
    cgroup: std::os::fd::BorrowedFd<'_>,
    attach_type: aya_obj::generated::bpf_attach_type,
) -> io::Result<OwnedFd> {
    let mut attr = zeroed_attr();
    attr.link_create.__bindgen_anon_1.prog_fd = program.as_raw_fd() as u32;
    attr.link_create.__bindgen_anon_2.target_fd = cgroup.as_raw_fd() as u32;
    attr.link_create.attach_type = attach_type as u32;
    bpf(aya_obj::generated::bpf_cmd::BPF_LINK_CREATE, &mut attr).map(new_fd)
}

/// Attaches a loaded raw-tracepoint program to the tracepoint `name`
/// (`BPF_RAW_TRACEPOINT_OPEN`); the returned link can be pinned.
pub fn bpf_raw_tracepoint_open(
    program: std::os::fd::BorrowedFd<'_>,
    name: &str,
) -> io::Result<OwnedFd> {
    let name = CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "tracepoint name contains a NUL byte",
        )
    })?;
    let mut attr = zeroed_attr();
    attr.raw_tracepoint.name = name.as_ptr() as u64;
    attr.raw_tracepoint.prog_fd = program.as_raw_fd() as u32;
    bpf(
        aya_obj::generated::bpf_cmd::BPF_RAW_TRACEPOINT_OPEN,
        &mut attr,
    )
    .map(new_fd)
}

/// The id of the BPF link after `id` in the kernel's list (`BPF_LINK_GET_NEXT_ID`), `None`
/// past the last.
pub fn bpf_link_next_id(id: u32) -> io::Result<Option<u32>> {
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_6.__bindgen_anon_1.start_id = id;
    match bpf(aya_obj::generated::bpf_cmd::BPF_LINK_GET_NEXT_ID, &mut attr) {
        // SAFETY: the kernel wrote `next_id` of the union member this command uses.
        Ok(_) => Ok(Some(unsafe { attr.__bindgen_anon_6.next_id })),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens the BPF link with kernel id `id` (`BPF_LINK_GET_FD_BY_ID`).
pub fn bpf_link_get_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_6.__bindgen_anon_1.link_id = id;
    bpf(
        aya_obj::generated::bpf_cmd::BPF_LINK_GET_FD_BY_ID,
        &mut attr,
    )
    .map(new_fd)
}

/// What the kernel says of a BPF link (`BPF_OBJ_GET_INFO_BY_FD`).
pub fn bpf_link_info(
    link: std::os::fd::BorrowedFd<'_>,
) -> io::Result<aya_obj::generated::bpf_link_info> {
    // SAFETY: bpf_link_info is plain integers and unions of them; all-zero is valid.
    obj_info(link, unsafe { std::mem::zeroed() })
}

/// The name a loaded BPF program was given (cut by the kernel to 15 bytes), by its id
/// (`BPF_PROG_GET_FD_BY_ID`, `BPF_OBJ_GET_INFO_BY_FD`). Not aya's `ProgramInfo`: reading
/// one probes the kernel's features by loading test programs, half a millisecond per process.
pub fn bpf_prog_name(id: u32) -> io::Result<String> {
    let mut attr = zeroed_attr();
    attr.__bindgen_anon_6.__bindgen_anon_1.prog_id = id;
    let program = bpf(
        aya_obj::generated::bpf_cmd::BPF_PROG_GET_FD_BY_ID,
        &mut attr,
    )
    .map(new_fd)?;
    // SAFETY: bpf_prog_info is plain integers and arrays of them; all-zero is valid.
    let info: aya_obj::generated::bpf_prog_info =
        obj_info(std::os::fd::AsFd::as_fd(&program), unsafe {
            std::mem::zeroed()
        })?;
    let name: Vec<u8> = info
        .name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&name).into_owned())
}

/// The kernel's id of a BPF map (`BPF_OBJ_GET_INFO_BY_FD`).
pub fn bpf_map_id(map: std::os::fd::BorrowedFd<'_>) -> io::Result<u32> {
    // SAFETY: bpf_map_info is plain integers and arrays of them; all-zero is valid.
    let info: aya_obj::generated::bpf_map_info = obj_info(map, unsafe { std::mem::zeroed() })?;
    Ok(info.id)
}

/// `BPF_OBJ_GET_INFO_BY_FD` into `info`, a zeroed `bpf_*_info` of the object's kind.
fn obj_info<T>(object: std::os::fd::BorrowedFd<'_>, mut info: T) -> io::Result<T> {
    let mut attr = zeroed_attr();
    attr.info.bpf_fd = object.as_raw_fd() as u32;
    attr.info.info_len = std::mem::size_of::<T>() as u32;
    attr.info.info = std::ptr::addr_of_mut!(info) as u64;
    bpf(
        aya_obj::generated::bpf_cmd::BPF_OBJ_GET_INFO_BY_FD,
        &mut attr,
    )?;
    Ok(info)
}

/// Detaches a BPF link from its hook (`BPF_LINK_DETACH`): its program stops running there,
/// whoever still holds or pins the link.
pub fn bpf_link_detach(link: std::os::fd::BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = zeroed_attr();
    attr.link_detach.link_fd = link.as_raw_fd() as u32;
    bpf(aya_obj::generated::bpf_cmd::BPF_LINK_DETACH, &mut attr).map(drop)
}

/// Removes `key` from a map (`BPF_MAP_DELETE_ELEM`); a missing key is not an error.
pub fn bpf_map_delete<K: IntoBytes + Immutable>(
    map: std::os::fd::BorrowedFd<'_>,
    key: &K,
) -> io::Result<()> {
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integers into the element member of a zeroed union; `key`
    // outlives the call and has the map's key size.
    unsafe {
        let elem = &mut attr.__bindgen_anon_2;
        elem.map_fd = map.as_raw_fd() as u32;
        elem.key = key as *const K as u64;
    }
    match bpf(aya_obj::generated::bpf_cmd::BPF_MAP_DELETE_ELEM, &mut attr) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other.map(drop),
    }
}

/// Sets each of `keys` to the value at the same place in `values`, in one call
/// (`BPF_MAP_UPDATE_BATCH`, any flag): a sandbox's syscall rules, say, entered together.
pub fn bpf_map_update_all<K: IntoBytes + Immutable, V: IntoBytes + Immutable>(
    map: std::os::fd::BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> io::Result<()> {
    if keys.len() != values.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "as many values as keys are needed",
        ));
    }
    if keys.is_empty() {
        return Ok(());
    }
    let mut attr = batch_attr(map, keys, values.as_ptr() as u64);
    bpf(aya_obj::generated::bpf_cmd::BPF_MAP_UPDATE_BATCH, &mut attr).map(drop)
}

/// The attribute of a batch command on `keys` (and the values at `values`, 0 for none):
/// arrays the caller keeps alive through the call, of the map's key (and value) size,
/// without padding (`IntoBytes`).
fn batch_attr<K: IntoBytes + Immutable>(
    map: std::os::fd::BorrowedFd<'_>,
    keys: &[K],
    values: u64,
) -> aya_obj::generated::bpf_attr {
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integers into the batch member of a zeroed union.
    unsafe {
        let batch = &mut attr.batch;
        batch.map_fd = map.as_raw_fd() as u32;
        batch.keys = keys.as_ptr() as u64;
        batch.values = values;
        batch.count = keys.len() as u32;
    }
    attr
}

/// Removes every key of `keys` from a map, in one call (`BPF_MAP_DELETE_BATCH`) when all go.
/// The kernel stops at a key it cannot remove: a missing one is no error, and past any
/// other the rest are still tried (the first such error is returned).
pub fn bpf_map_delete_all<K: IntoBytes + Immutable>(
    map: std::os::fd::BorrowedFd<'_>,
    keys: &[K],
) -> io::Result<()> {
    let mut first = None;
    let mut done = 0;
    while done < keys.len() {
        let mut attr = batch_attr(map, &keys[done..], 0);
        let result = bpf(aya_obj::generated::bpf_cmd::BPF_MAP_DELETE_BATCH, &mut attr);
        // SAFETY: the batch member is the one written above; the kernel sets its `count` to
        // the keys it removed, on failure too.
        let removed = unsafe { attr.batch.count } as usize;
        match result {
            Ok(_) => break,
            Err(e) => {
                if e.raw_os_error() != Some(libc::ENOENT) {
                    first.get_or_insert(e);
                }
                done += removed + 1;
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// The value of `key` in a map (`BPF_MAP_LOOKUP_ELEM`), `None` when absent.
pub fn bpf_map_lookup<K: IntoBytes + Immutable, V: FromBytes>(
    map: std::os::fd::BorrowedFd<'_>,
    key: &K,
) -> io::Result<Option<V>> {
    // Any bytes the kernel writes are a `V` (`FromBytes`): no uninitialized state to track.
    let mut value = V::new_zeroed();
    let mut attr = zeroed_attr();
    // SAFETY: writing plain integers into the element member of a zeroed union; `key` and
    // `value` outlive the call and have the map's key and value sizes.
    unsafe {
        let elem = &mut attr.__bindgen_anon_2;
        elem.map_fd = map.as_raw_fd() as u32;
        elem.key = key as *const K as u64;
        elem.__bindgen_anon_1.value = std::ptr::addr_of_mut!(value) as u64;
    }
    match bpf(aya_obj::generated::bpf_cmd::BPF_MAP_LOOKUP_ELEM, &mut attr) {
        Ok(_) => Ok(Some(value)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every key of a map (`BPF_MAP_GET_NEXT_KEY` from the start).
pub fn bpf_map_keys<K: FromBytes + IntoBytes + Immutable + Copy>(
    map: std::os::fd::BorrowedFd<'_>,
) -> io::Result<Vec<K>> {
    let mut keys = Vec::new();
    let mut previous: Option<K> = None;
    loop {
        let mut next = K::new_zeroed();
        let mut attr = zeroed_attr();
        // SAFETY: as in `bpf_map_lookup`; a zero `key` pointer asks for the first key.
        unsafe {
            let elem = &mut attr.__bindgen_anon_2;
            elem.map_fd = map.as_raw_fd() as u32;
            elem.key = previous.as_ref().map_or(0, |k| k as *const K as u64);
            elem.__bindgen_anon_1.next_key = std::ptr::addr_of_mut!(next) as u64;
        }
        match bpf(aya_obj::generated::bpf_cmd::BPF_MAP_GET_NEXT_KEY, &mut attr) {
            Ok(_) => {
                keys.push(next);
                previous = Some(next);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(keys),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_HASH;
    use std::os::fd::AsFd;

    #[test]
    fn a_batch_enters_every_key_and_removes_them_past_a_missing_one() {
        if !cordon_testkit::require_root(
            "a_batch_enters_every_key_and_removes_them_past_a_missing_one",
        ) {
            return;
        }
        let map = bpf_map_create(BPF_MAP_TYPE_HASH, 8, 4, 16, None).expect("a hash map");
        let keys: Vec<u64> = (1..=6).collect();
        let values: Vec<u32> = keys.iter().map(|k| *k as u32 * 10).collect();
        bpf_map_update_all(map.as_fd(), &keys, &values).expect("batch update");
        assert_eq!(
            bpf_map_lookup::<u64, u32>(map.as_fd(), &4).unwrap(),
            Some(40)
        );
        assert!(
            bpf_map_update_all(map.as_fd(), &keys, &values[1..]).is_err(),
            "a value short"
        );

        // 3 and 9 are not there: the kernel stops at each, the rest still go.
        bpf_map_delete(map.as_fd(), &3u64).expect("delete");
        bpf_map_delete_all(map.as_fd(), &[1u64, 2, 3, 4, 9, 5]).expect("batch delete");
        let left: Vec<u64> = bpf_map_keys(map.as_fd()).expect("keys");
        assert_eq!(left, [6], "only the key not named is left");
        bpf_map_delete_all::<u64>(map.as_fd(), &[]).expect("nothing to remove");
    }
}

//! What the kernel has attached of Cordon's programs, whether or not their pins can be seen.
//!
//! Pins are only names: when the bpffs holding them is covered by another mount (or they
//! are removed by hand), the programs stay attached, and a process that finds no pins loads
//! and attaches a second set. The first set, knowing none of the new sandboxes, would then
//! refuse their connections without an event. So the loader asks the kernel which links run
//! Cordon's programs on Cordon's cgroup, and detaches those that are not the set it uses.
//! (Links on raw tracepoints cannot be detached, and need not be: a stale copy acts only for
//! the sandboxes in its own maps, which no new sandbox enters. It is gone with its pins.)

use std::os::fd::{AsFd as _, OwnedFd};

use aya_obj::generated::bpf_link_type;

use super::{io, EbpfError, PROGRAMS};
use crate::bpf as sys;

/// The kernel's limit on a program's name: longer names are cut (`BPF_OBJ_NAME_LEN` - 1).
const NAME_LEN: usize = 15;

/// A link that runs one of Cordon's programs.
pub(super) struct Link {
    pub id: u32,
    pub program: String,
    pub fd: OwnedFd,
}

/// Every link running one of Cordon's programs (by name) on the cgroup `parent`.
pub(super) fn cordon_links(parent: u64) -> Result<Vec<Link>, EbpfError> {
    let mut links = Vec::new();
    let mut id = 0;
    while let Some(next) = sys::bpf_link_next_id(id).map_err(io("list the kernel's BPF links"))? {
        id = next;
        // Gone since it was listed, or not ours to open: not one to worry about.
        let Ok(fd) = sys::bpf_link_get_fd_by_id(id) else {
            continue;
        };
        let info = sys::bpf_link_info(fd.as_fd()).map_err(io(format!("read BPF link {id}")))?;
        let on_our_hook = info.type_ == bpf_link_type::BPF_LINK_TYPE_CGROUP as u32
            // SAFETY: the kernel fills the `cgroup` member for cgroup links.
            && unsafe { info.__bindgen_anon_1.cgroup.cgroup_id == parent };
        if !on_our_hook {
            continue;
        }
        // Unloaded since, or not ours to open: not one to worry about.
        let Ok(program) = sys::bpf_prog_name(info.prog_id) else {
            continue;
        };
        if is_cordons(&program) {
            links.push(Link { id, program, fd });
        }
    }
    Ok(links)
}

/// The id of the link pinned at `path`, and whether it is still attached (a cgroup link
/// detached by someone names no cgroup any more).
pub(super) fn pinned(path: &std::path::Path, parent: u64) -> Result<(u32, bool), EbpfError> {
    let fd =
        sys::bpf_obj_get(path).map_err(io(format!("open the pinned link {}", path.display())))?;
    let info = sys::bpf_link_info(fd.as_fd()).map_err(io(format!("read {}", path.display())))?;
    let attached = info.type_ != bpf_link_type::BPF_LINK_TYPE_CGROUP as u32
        // SAFETY: the kernel fills the `cgroup` member for cgroup links.
        || unsafe { info.__bindgen_anon_1.cgroup.cgroup_id == parent };
    Ok((info.id, attached))
}

/// Detaches every link of `links` but those in `keep`; returns the ids and programs of the
/// links detached.
pub(super) fn detach_others(links: Vec<Link>, keep: &[u32]) -> Vec<(u32, String)> {
    let mut detached = Vec::new();
    for link in links.into_iter().filter(|l| !keep.contains(&l.id)) {
        match sys::bpf_link_detach(link.fd.as_fd()) {
            Ok(()) => detached.push((link.id, link.program)),
            Err(e) => tracing::warn!(
                "cannot detach a stale copy of Cordon's program {} (link {}): {e}",
                link.program,
                link.id
            ),
        }
    }
    detached
}

/// Whether a program name (as the kernel keeps it, cut to 15 bytes) is one of Cordon's.
fn is_cordons(name: &str) -> bool {
    PROGRAMS
        .iter()
        .any(|(ours, _)| ours.get(..NAME_LEN).unwrap_or(ours) == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_matched_as_the_kernel_cuts_them() {
        assert!(is_cordons("cordon_connect4"));
        assert!(
            is_cordons("cordon_sock_cre"),
            "cordon_sock_create, cut to 15"
        );
        assert!(
            !is_cordons("cordon_sock_create"),
            "the kernel never keeps 18 bytes"
        );
        assert!(!is_cordons("sd_fw_egress"));
    }
}

//! Cordon: kernel-enforced sandboxes for AI agents.
//!
//! The flow a newcomer should keep in mind:
//!
//! ```text
//! profile (TOML) --profile::load--> Profile chain --policy::compile--> Policy
//!     Policy --sandbox::launch--> child: mount namespace, Landlock, seccomp, execve
//! ```
//!
//! * [`profile`] reads profile files, follows `extends`, and reports errors as `FILE:LINE:COL`;
//!   [`policy`] is the one in-memory form every enforcement layer is compiled from. Both live
//!   in the `cordon-policy` crate, which needs no kernel and no eBPF toolchain.
//! * [`sandbox`] (`cordon-sandbox`) turns a [`policy::Policy`] into kernel state in a forked
//!   child and runs the command; [`cgroup`] is the sandbox's cgroup.
//! * [`session`] is the life of one sandbox (kernel side registered, watched, waited for,
//!   cleaned up), for `cordon run` and cordond's worker alike.
//! * [`ebpf`] (`cordon-ebpf`, the one crate built with clang) is the kernel side; [`network`],
//!   [`audit`] and [`monitor`] watch a sandbox through it;
//!   [`report`] is what every watcher holds (where events go, when to stop).
//! * [`event`] is the one event type; [`export`] (`cordon-export`) carries events on (spool,
//!   journal, collector).
//! * [`learn`] turns an audited run's events into a profile (`cordon profile learn`).
//! * [`contain`] lists sandboxes and acts on them (kill, freeze, isolate, ...).
//! * [`daemon`] is cordond; [`api`] its socket protocol and who may do what; [`cli`] is `cordon`.
//! * [`sys`] holds the few raw system calls the crates we build on do not wrap (the bpf(2)
//!   ones are the kernel side's own).

pub mod api;
pub mod audit;
pub mod cli;
pub mod contain;
pub mod daemon;
pub mod evidence;
pub mod expect;
pub mod learn;
pub mod monitor;
pub mod network;
pub mod report;
pub mod responder;
pub mod session;

/// The launcher (mounts, Landlock, identity, seccomp, the sandbox's cgroup and the raw
/// system calls they make) lives in `cordon-sandbox`; the kernel side (the eBPF programs,
/// their loader and maps) in `cordon-ebpf`, the only crate whose build needs clang.
pub use cordon_ebpf as ebpf;
/// Where events go after a watcher has them (spool, journal, delivery): `cordon-export`.
pub use cordon_export as export;
pub use cordon_policy::{policy, profile};
/// The one event type lives in `cordon-proto`, shared with the collector.
pub use cordon_proto::event;
pub use cordon_sandbox as sandbox;
pub use cordon_sandbox::{cgroup, sys};

#[cfg(test)]
mod tests {
    /// `build.rs` links the unwinder in (libgcc_eh) instead of loading libgcc_s.so.1: the
    /// library is not loaded, a panic still unwinds, and a backtrace still names its frames.
    #[test]
    fn the_linked_in_unwinder_unwinds_without_libgcc_s() {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
        assert!(!maps.contains("libgcc_s"), "libgcc_s is loaded:\n{maps}");
        // `resume_unwind` unwinds without calling the panic hook (nothing is printed).
        let caught = std::panic::catch_unwind(|| std::panic::resume_unwind(Box::new(7u8)));
        let payload = caught.expect_err("the unwind is caught");
        assert_eq!(payload.downcast_ref::<u8>(), Some(&7));
        let trace = std::backtrace::Backtrace::force_capture().to_string();
        assert!(
            trace.contains("the_linked_in_unwinder_unwinds_without_libgcc_s"),
            "{trace}"
        );
    }
}

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
//! * [`sandbox`] turns a [`policy::Policy`] into kernel state in a forked child and runs the command.
//! * [`session`] is the life of one sandbox (kernel side registered, watched, waited for,
//!   cleaned up), for `cordon run` and cordond's worker alike.
//! * [`ebpf`], [`network`], [`audit`] and [`monitor`] load the kernel side and watch a sandbox;
//!   [`report`] is what every watcher holds (where events go, when to stop).
//! * [`event`] is the one event type; [`export`] carries events on (spool, journal, collector).
//! * [`learn`] turns an audited run's events into a profile (`cordon profile learn`).
//! * [`contain`] lists sandboxes and acts on them (kill, freeze, isolate, ...).
//! * [`daemon`] is cordond; [`api`] its socket protocol and who may do what; [`cli`] is `cordon`.
//! * [`sys`] holds the few raw system calls the crates we build on do not wrap.

pub mod api;
pub mod audit;
pub mod cgroup;
pub mod cli;
pub mod contain;
pub mod daemon;
pub mod ebpf;
pub mod evidence;
pub mod expect;
pub mod export;
pub mod learn;
pub mod monitor;
pub mod network;
pub mod report;
pub mod responder;
pub mod sandbox;
pub mod session;
pub mod sys;

pub use cordon_policy::{policy, profile};
/// The one event type lives in `cordon-proto`, shared with the collector.
pub use cordon_proto::event;

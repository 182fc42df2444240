//! Cordon's profiles and policy, apart from everything that touches the kernel, so that
//! checking, testing or reusing them needs neither root nor the eBPF toolchain:
//!
//! ```text
//! profile (TOML) --profile::load--> Profile chain --policy::compile--> Policy
//! ```
//!
//! * [`profile`] reads profile files, follows `extends`, and reports errors as `FILE:LINE:COL`.
//! * [`policy`] is the one in-memory form every enforcement layer is compiled from (the
//!   `cordon` crate's sandbox, seccomp, Landlock and eBPF maps).
//! * [`diff`] says what one policy grants or keeps that another does not.

pub mod diff;
pub mod policy;
pub mod profile;
pub mod response;

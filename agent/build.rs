//! Links the unwinder into `cordon` and `cordond` (libgcc_eh, as `gcc -static-libgcc` does)
//! instead of loading libgcc_s.so.1 at every start.
//!
//! Rust's standard library asks for `-lgcc_s` on linux-gnu; the linker takes the first
//! `libgcc_s.so` or `libgcc_s.a` along its search path, and this script puts a
//! `libgcc_s.a` (a link to the compiler's libgcc_eh.a: the same unwinder, as a static
//! archive) first. What that saves: libgcc_s's constructor probes the processor with `cpuid`
//! for `__builtin_cpu_supports`, and each `cpuid` exits to the hypervisor in a VM; with the
//! loader's work on one more library that was about 0.2 ms of every `cordon run` here
//! (README, Performance). glibc stays a shared library, so its NSS modules (user lookups)
//! and security updates work as for any program.
//!
//! Where the compiler has no libgcc_eh.a, nothing changes and the build says so (and the unit
//! test `the_linked_in_unwinder_unwinds_without_libgcc_s` fails); a cross build keeps
//! libgcc_s.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    let target = std::env::var("TARGET").unwrap_or_default();
    // `cc` is the host's compiler: a cross build keeps the target's libgcc_s.
    if !target.ends_with("-linux-gnu") || std::env::var("HOST").ok() != Some(target) {
        return;
    }
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let found = std::process::Command::new(&cc)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    // Without the archive the compiler prints the bare name back.
    let Some(eh) = found.filter(|p| p.is_absolute() && p.is_file()) else {
        println!("cargo:warning=no libgcc_eh.a from `{cc}`: the unwinder stays libgcc_s.so.1");
        return;
    };
    // A compiler upgrade that moves the archive builds this again.
    println!("cargo:rerun-if-changed={}", eh.display());
    let dir = out.join("static-unwinder");
    let link = dir.join("libgcc_s.a");
    let _ = std::fs::remove_file(&link);
    if let Err(e) =
        std::fs::create_dir_all(&dir).and_then(|()| std::os::unix::fs::symlink(&eh, &link))
    {
        println!(
            "cargo:warning=cannot link {}: {e}; the unwinder stays libgcc_s.so.1",
            link.display()
        );
        return;
    }
    println!("cargo:rustc-link-search=native={}", dir.display());
}

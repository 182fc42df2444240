//! An ELF core of a process's memory, read through `/proc/PID/mem` (which needs no
//! ptrace stop, so a frozen process stays frozen): every readable mapping as a `PT_LOAD`
//! segment, with the `NT_PRPSINFO` and `NT_FILE` notes that let gdb name the process and
//! the files mapped (`gdb EXE memory/PID.core`). The registers are not in it: reading them
//! would take a ptrace stop, which a frozen cgroup does not allow without thawing it.
//!
//! Only the pages the process has in memory (or swapped out) are read, as
//! `/proc/PID/pagemap` says: the others read as zeros in the core and are holes in its
//! file, so a process that maps terabytes it never touches costs the collection nothing,
//! and reading never brings a page in that the process would see arrive.

use std::fs::File;
use std::io::{Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::FileExt as _;

/// The most memory written for one collection, all processes together; mappings beyond it
/// are listed empty.
pub const MAX_BYTES: u64 = 4 << 30;
const PAGE: u64 = 4096;

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const NT_PRPSINFO: u32 = 3;
const NT_FILE: u32 = 0x4649_4c45;

#[cfg(target_arch = "x86_64")]
const MACHINE: u16 = 62;
#[cfg(target_arch = "aarch64")]
const MACHINE: u16 = 183;

struct Mapping {
    start: u64,
    end: u64,
    read: bool,
    write: bool,
    exec: bool,
    offset: u64,
    path: Option<String>,
}

/// Parses `/proc/PID/maps`: `start-end perms offset dev inode [path]`.
fn mappings(maps: &str) -> Vec<Mapping> {
    maps.lines()
        .filter_map(|line| {
            let mut cols = line.splitn(6, ' ');
            let (start, end) = cols.next()?.split_once('-')?;
            let perms = cols.next()?.as_bytes();
            let offset = u64::from_str_radix(cols.next()?, 16).ok()?;
            let path = cols.nth(2).map(str::trim).filter(|p| !p.is_empty());
            Some(Mapping {
                start: u64::from_str_radix(start, 16).ok()?,
                end: u64::from_str_radix(end, 16).ok()?,
                read: perms.first() == Some(&b'r'),
                write: perms.get(1) == Some(&b'w'),
                exec: perms.get(2) == Some(&b'x'),
                offset,
                path: path.map(String::from),
            })
        })
        // The kernel's own pages: reading them fails or means nothing.
        .filter(|m| {
            !matches!(
                m.path.as_deref(),
                Some("[vvar]" | "[vvar_vclock]" | "[vsyscall]")
            )
        })
        .collect()
}

/// Writes the core of `pid` to an unnamed temporary file, within what `budget` allows.
pub fn write(pid: u32, budget: &mut super::Budget) -> std::io::Result<File> {
    let maps = mappings(&std::fs::read_to_string(format!("/proc/{pid}/maps"))?);
    let mem = File::open(format!("/proc/{pid}/mem"))?;
    let pagemap = File::open(format!("/proc/{pid}/pagemap"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();

    let mut note_bytes = Vec::new();
    note(
        &mut note_bytes,
        NT_PRPSINFO,
        &prpsinfo(pid, &status, &cmdline),
    );
    note(&mut note_bytes, NT_FILE, &nt_file(&maps));

    let headers = 64 + 56 * (maps.len() as u64 + 1);
    let mut offset = (headers + note_bytes.len() as u64).next_multiple_of(PAGE);
    let mut phdrs = Vec::new();
    phdrs.push(phdr(PT_NOTE, 4, headers, 0, note_bytes.len() as u64, 4));
    let mut placed = Vec::new();
    for m in &maps {
        let len = m.end - m.start;
        let filesz = if m.read { len } else { 0 };
        let flags = u32::from(m.read) << 2 | u32::from(m.write) << 1 | u32::from(m.exec);
        let mut p = phdr(PT_LOAD, flags, offset, m.start, filesz, PAGE);
        p[40..48].copy_from_slice(&len.to_le_bytes()); // p_memsz
        phdrs.push(p);
        placed.push((offset, filesz));
        offset += filesz;
    }

    let mut file = tempfile::tempfile()?;
    file.write_all(&elf_header(phdrs.len() as u16))?;
    for p in &phdrs {
        file.write_all(p)?;
    }
    file.write_all(&note_bytes)?;
    // Holes where nothing is written: the file is as long as the core, its blocks only the
    // pages read.
    file.set_len(offset)?;
    let (mut unreadable, mut left_out) = (0u64, 0u64);
    let mut page = vec![0u8; PAGE as usize];
    for (m, (at, filesz)) in maps.iter().zip(placed) {
        for index in 0..filesz / PAGE {
            if budget.out_of_time() {
                budget.gap(format!("process {pid}'s core: the collection's time ran out; the rest of its memory is zeros"));
                file.seek(SeekFrom::Start(0))?;
                return Ok(file);
            }
            let address = m.start + index * PAGE;
            if !in_memory(&pagemap, address) {
                continue;
            }
            if budget.memory < PAGE {
                left_out += PAGE;
                continue;
            }
            budget.memory -= PAGE;
            // A page the kernel will not give (a guard, a mapping of a file cut short)
            // stays a hole.
            if mem.read_exact_at(&mut page, address).is_err() {
                unreadable += PAGE;
                continue;
            }
            file.write_all_at(&page, at + index * PAGE)?;
        }
    }
    if unreadable > 0 {
        budget.gap(format!(
            "process {pid}'s core: {unreadable} bytes in memory unreadable, left as zeros"
        ));
    }
    if left_out > 0 {
        budget.gap(format!(
            "process {pid}'s core: {left_out} bytes in memory left out, past {MAX_BYTES} bytes for the collection"
        ));
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

/// Whether the page at `address` is in memory or swapped out (`/proc/PID/pagemap`: a
/// 64-bit entry per page, bit 63 present, bit 62 swapped).
fn in_memory(pagemap: &File, address: u64) -> bool {
    let mut entry = [0u8; 8];
    pagemap
        .read_exact_at(&mut entry, address / PAGE * 8)
        .is_ok_and(|()| u64::from_le_bytes(entry) & (0b11 << 62) != 0)
}

fn elf_header(phnum: u16) -> Vec<u8> {
    let mut h = Vec::with_capacity(64);
    h.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    h.extend_from_slice(&[0; 8]);
    h.extend_from_slice(&4u16.to_le_bytes()); // ET_CORE
    h.extend_from_slice(&MACHINE.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    h.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    h.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    h.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    h.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    h.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    h.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    h.extend_from_slice(&phnum.to_le_bytes());
    h.extend_from_slice(&[0; 6]); // no section headers
    h
}

fn phdr(kind: u32, flags: u32, offset: u64, vaddr: u64, size: u64, align: u64) -> [u8; 56] {
    let mut p = [0u8; 56];
    p[0..4].copy_from_slice(&kind.to_le_bytes());
    p[4..8].copy_from_slice(&flags.to_le_bytes());
    p[8..16].copy_from_slice(&offset.to_le_bytes());
    p[16..24].copy_from_slice(&vaddr.to_le_bytes());
    // p_paddr stays 0.
    p[32..40].copy_from_slice(&size.to_le_bytes());
    p[40..48].copy_from_slice(&size.to_le_bytes());
    p[48..56].copy_from_slice(&align.to_le_bytes());
    p
}

/// One ELF note named `CORE`, name and description padded to 4 bytes.
fn note(out: &mut Vec<u8>, kind: u32, desc: &[u8]) {
    out.extend_from_slice(&5u32.to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(b"CORE\0\0\0\0");
    out.extend_from_slice(desc);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// `struct elf_prpsinfo` of a 64-bit Linux: the process's state, ids and name.
fn prpsinfo(pid: u32, status: &str, cmdline: &[u8]) -> Vec<u8> {
    let field = |name: &str| -> u32 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let mut d = vec![0u8; 136];
    d[1] = b'R';
    d[16..20].copy_from_slice(&field("Uid").to_le_bytes());
    d[20..24].copy_from_slice(&field("Gid").to_le_bytes());
    d[24..28].copy_from_slice(&pid.to_le_bytes());
    d[28..32].copy_from_slice(&field("PPid").to_le_bytes());
    let name = status
        .lines()
        .find_map(|l| l.strip_prefix("Name:"))
        .unwrap_or("")
        .trim()
        .as_bytes();
    let n = name.len().min(15);
    d[40..40 + n].copy_from_slice(&name[..n]);
    let args: Vec<u8> = cmdline
        .iter()
        .map(|b| if *b == 0 { b' ' } else { *b })
        .collect();
    let args = args.trim_ascii_end();
    let n = args.len().min(79);
    d[56..56 + n].copy_from_slice(&args[..n]);
    d
}

/// `NT_FILE`: which file each file-backed mapping holds, and from which page of it.
fn nt_file(maps: &[Mapping]) -> Vec<u8> {
    let files: Vec<&Mapping> = maps
        .iter()
        .filter(|m| m.path.as_deref().is_some_and(|p| p.starts_with('/')))
        .collect();
    let mut d = Vec::new();
    d.extend_from_slice(&(files.len() as u64).to_le_bytes());
    d.extend_from_slice(&PAGE.to_le_bytes());
    for m in &files {
        d.extend_from_slice(&m.start.to_le_bytes());
        d.extend_from_slice(&m.end.to_le_bytes());
        d.extend_from_slice(&(m.offset / PAGE).to_le_bytes());
    }
    for m in &files {
        d.extend_from_slice(m.path.as_deref().unwrap_or("").as_bytes());
        d.push(0);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_parse_and_the_kernels_own_pages_are_left_out() {
        let maps = mappings(
            "55d0c0000000-55d0c0021000 r-xp 00002000 fe:01 1234 /usr/bin/cat\n\
             7ffd1000-7ffd2000 rw-p 00000000 00:00 0 [stack]\n\
             7ffd3000-7ffd4000 r--p 00000000 00:00 0 [vvar]\n\
             7ffe0000-7ffe1000 ---p 00000000 00:00 0\n",
        );
        assert_eq!(maps.len(), 3);
        assert!(maps[0].read && maps[0].exec && !maps[0].write);
        assert_eq!(maps[0].path.as_deref(), Some("/usr/bin/cat"));
        assert_eq!(maps[0].offset, 0x2000);
        assert_eq!(maps[1].path.as_deref(), Some("[stack]"));
        assert!(!maps[2].read && maps[2].path.is_none());
    }

    #[test]
    fn a_core_of_this_process_holds_its_memory() {
        let marker = format!("cordon-core-marker-{}", std::process::id()).into_bytes();
        let kept = std::hint::black_box(marker.clone());
        let mut budget = crate::evidence::Budget::new(crate::evidence::DEADLINE);
        let mut file = write(std::process::id(), &mut budget).expect("core");
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes).unwrap();
        assert_eq!(&bytes[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([bytes[16], bytes[17]]), 4);
        assert!(bytes.windows(kept.len()).any(|w| w == kept.as_slice()));
    }
}

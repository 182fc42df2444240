//! The user-space side of a `BPF_MAP_TYPE_RINGBUF`: records the programs committed, read in
//! order from the ring's memory mapping.
//!
//! Cordon's rings are pooled (see `rings` in `ebpf/cordon.bpf.c`): a sandbox gets a ring an
//! earlier sandbox used, whose positions are wherever that one stopped. The reader therefore
//! starts from the positions the kernel holds, never from zero, and [`Ring::skip_all`]
//! passes over what a previous holder left unread.
//!
//! Only the reader moves the consumer position. A position it did not write means another
//! process holds the ring's descriptor and steered it (to hide records, or to stall the
//! reader): [`Ring::take_tampered`] says so, and reading goes on from what the kernel has
//! committed.
//!
//! The layout is the kernel's (`kernel/bpf/ringbuf.c`): a read-write page with the consumer
//! position, then a read-only page with the producer position, then the data pages, mapped
//! twice in a row so that a record never wraps. Each record starts with an 8-byte header
//! whose first word is its length with a busy bit (still being written) and a discard bit.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

const BUSY_BIT: u32 = 1 << 31;
const DISCARD_BIT: u32 = 1 << 30;
const HEADER_BYTES: usize = 8;

/// One shared mapping of the ring's descriptor, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(fd: BorrowedFd<'_>, len: usize, offset: usize, writable: bool) -> io::Result<Self> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a new shared mapping at an address the kernel picks; nothing in this process
        // aliases it, and `Drop` unmaps exactly this range.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` are the mapping `new` made; nothing borrows it past `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

// SAFETY: the mapping is plain shared memory; every access to the parts the kernel writes
// goes through atomics, and `Ring` hands out data only behind `&mut self`.
unsafe impl Send for Mapping {}

/// A ring buffer map, mapped for reading.
pub struct Ring {
    fd: OwnedFd,
    /// The consumer page (read-write).
    consumer: Mapping,
    /// The producer page, then the data pages twice (read-only).
    producer: Mapping,
    page: usize,
    mask: usize,
    /// The consumer position this reader last wrote.
    last: usize,
    /// How many times the consumer position was found moved by someone else.
    tampered: u64,
}

impl Ring {
    /// Maps the ring buffer `fd`, whose data area is `bytes` long (a power of two).
    pub fn new(fd: OwnedFd, bytes: usize) -> io::Result<Self> {
        if !bytes.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a ring buffer's size is a power of two",
            ));
        }
        // SAFETY: sysconf reads a constant of the system.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .map_err(|_| io::Error::other("no page size"))?;
        let consumer = Mapping::new(fd.as_fd(), page, 0, true)?;
        let producer = Mapping::new(fd.as_fd(), page + 2 * bytes, page, false)?;
        let mut ring = Self {
            fd,
            consumer,
            producer,
            page,
            mask: bytes - 1,
            last: 0,
            tampered: 0,
        };
        ring.last = ring.consumer_pos().load(Ordering::Acquire);
        Ok(ring)
    }

    /// How many times the consumer position was moved by another process since the last
    /// call (each time, records may have been skipped unseen).
    pub fn take_tampered(&mut self) -> u64 {
        std::mem::take(&mut self.tampered)
    }

    fn set_consumer(&mut self, pos: usize) {
        // SeqCst pairs with the kernel's check of the consumer position after it commits:
        // either it sees this position, or the next read sees its record.
        self.consumer_pos().store(pos, Ordering::SeqCst);
        self.last = pos;
    }

    fn consumer_pos(&self) -> &AtomicUsize {
        // SAFETY: the consumer page starts with the kernel's `unsigned long consumer_pos`,
        // aligned to a page; the mapping lives as long as `self`.
        unsafe { &*self.consumer.ptr.as_ptr().cast::<AtomicUsize>() }
    }

    fn producer_pos(&self) -> &AtomicUsize {
        // SAFETY: as for `consumer_pos`, with the producer page's `producer_pos`.
        unsafe { &*self.producer.ptr.as_ptr().cast::<AtomicUsize>() }
    }

    /// The header word of the record at position `pos`.
    fn header(&self, pos: usize) -> &AtomicU32 {
        let offset = self.page + (pos & self.mask);
        // SAFETY: `offset + 4` is within the mapping (the data area is mapped twice, so any
        // offset below `page + bytes` has `bytes` more behind it), and record headers are
        // 8-byte aligned.
        unsafe { &*self.producer.ptr.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    /// Passes over every record committed so far (a previous holder's leftovers).
    pub fn skip_all(&mut self) {
        let producer = self.producer_pos().load(Ordering::Acquire);
        self.set_consumer(producer);
    }

    /// Calls `f` with each committed record, in order, until none is ready or `most` have
    /// been read; returns how many.
    pub fn drain(&mut self, most: usize, mut f: impl FnMut(&[u8])) -> usize {
        let mut read = 0;
        let mut pos = self.consumer_pos().load(Ordering::Acquire);
        if pos != self.last {
            // Someone else moved it: trust neither their position nor the records behind
            // it (the kernel reserved space against it); go on from what is committed now.
            self.tampered += 1;
            self.skip_all();
            pos = self.last;
        }
        loop {
            let producer = self.producer_pos().load(Ordering::Acquire);
            if pos == producer {
                return read;
            }
            while pos != producer {
                if read == most {
                    return read;
                }
                let header = self.header(pos).load(Ordering::Acquire);
                if header & BUSY_BIT != 0 {
                    return read;
                }
                let len = (header & !(BUSY_BIT | DISCARD_BIT)) as usize;
                if len > self.mask + 1 - HEADER_BYTES {
                    // Not a header the kernel wrote: never read past the ring; pass over
                    // everything committed so far rather than stop here for good.
                    tracing::error!("a ring buffer record claims {len} bytes; records skipped");
                    self.skip_all();
                    return read;
                }
                if header & DISCARD_BIT == 0 {
                    let start = self.page + (pos & self.mask) + HEADER_BYTES;
                    // SAFETY: the record is committed (no busy bit) and lies within the
                    // double-mapped data area; the kernel does not write it again until the
                    // consumer position passes it, which happens after `f` returns.
                    let data = unsafe {
                        std::slice::from_raw_parts(self.producer.ptr.as_ptr().add(start), len)
                    };
                    f(data);
                    read += 1;
                }
                pos = pos.wrapping_add((HEADER_BYTES + len).next_multiple_of(8));
                self.set_consumer(pos);
            }
        }
    }
}

impl AsFd for Ring {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Ring {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.as_raw_fd()
    }
}

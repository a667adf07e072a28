//! The bytes a test binary holds on its heap right now, counted by a global
//! allocator wrapped around the system one, so a memory figure can tell
//! what the program keeps from what the allocator keeps (RSS counts both:
//! freed memory glibc has not given back, per-thread arenas).
//!
//! A test binary opts in with
//! `#[global_allocator] static HEAP: common::heap::Counting = common::heap::Counting;`
//! and reads [`live_bytes`]; without it [`live_bytes`] stays 0.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

static LIVE: AtomicUsize = AtomicUsize::new(0);

pub struct Counting;

// SAFETY: every call is passed on to `System` unchanged; only a counter
// is kept beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

/// Bytes allocated and not yet freed, in KiB.
pub fn live_kib() -> u64 {
    (LIVE.load(Ordering::Relaxed) / 1024) as u64
}

//! The per-allocation bound of the fuzz targets, without a sanitizer.
//!
//! libFuzzer's `-malloc_limit_mb` works only through a sanitizer's malloc
//! hooks, and AddressSanitizer costs the safe-Rust targets most of their
//! speed for nothing else they need. [`Bounded`] wraps the system allocator
//! and aborts the process, naming the size, when one allocation (or a
//! reallocation's new size) exceeds the bound: libFuzzer's deadly-signal
//! handler then records a `crash-*` artifact holding the input. The total
//! stays bounded by `-rss_limit_mb`.
//!
//! The bound is `FUZZ_MALLOC_MB` mebibytes (default [`DEFAULT_MB`]: twice the
//! 16 MiB frame limit), read at the first allocation. The fuzz crate
//! (`fuzz/`) enables the feature `bounded-alloc`, which installs [`Bounded`]
//! as the global allocator of every target; the workspace never does.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The bound when `FUZZ_MALLOC_MB` is not set, in MiB.
pub const DEFAULT_MB: usize = 32;

/// The system allocator, refusing (by aborting) any single allocation larger
/// than its bound.
pub struct Bounded {
    /// The bound in bytes; 0 until read from the environment.
    limit: AtomicUsize,
}

impl Bounded {
    /// A bound read from `FUZZ_MALLOC_MB` at the first allocation.
    pub const fn from_env() -> Self {
        Bounded {
            limit: AtomicUsize::new(0),
        }
    }

    /// A bound of `bytes` (for tests: the environment is not read).
    pub const fn with_limit(bytes: usize) -> Self {
        Bounded {
            limit: AtomicUsize::new(bytes),
        }
    }

    /// The bound in bytes.
    pub fn limit(&self) -> usize {
        match self.limit.load(Ordering::Relaxed) {
            0 => self.read_env(),
            l => l,
        }
    }

    fn read_env(&self) -> usize {
        // reading the variable allocates: the default holds meanwhile
        self.limit.store(DEFAULT_MB << 20, Ordering::Relaxed);
        let mb = match std::env::var("FUZZ_MALLOC_MB") {
            Err(std::env::VarError::NotPresent) => DEFAULT_MB,
            Ok(v) => match v.trim().parse::<usize>() {
                Ok(mb) if mb > 0 && mb <= usize::MAX >> 20 => mb,
                _ => die(format_args!(
                    "FUZZ_MALLOC_MB={v:?} is not a positive number of MiB"
                )),
            },
            Err(e) => die(format_args!("FUZZ_MALLOC_MB: {e}")),
        };
        self.limit.store(mb << 20, Ordering::Relaxed);
        mb << 20
    }

    fn check(&self, size: usize) {
        let limit = self.limit();
        if size > limit {
            die(format_args!(
                "one allocation of {size} bytes exceeds the bound of {} MiB (FUZZ_MALLOC_MB)",
                limit >> 20
            ));
        }
    }
}

/// Print `why` and abort, allocating nothing more.
fn die(why: std::fmt::Arguments<'_>) -> ! {
    // stderr is unbuffered: formatting writes straight through
    let _ = writeln!(std::io::stderr(), "==byzscale-fuzz: {why}");
    std::process::abort()
}

// SAFETY: every call is forwarded unchanged to `System` after a size check
// that either returns or aborts.
unsafe impl GlobalAlloc for Bounded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.check(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.check(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.check(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// Set in the child process of [`an_allocation_over_the_bound_aborts`].
    const CHILD: &str = "BYZSCALE_BOUNDED_ALLOC_CHILD";

    #[test]
    fn allocations_within_the_bound_pass_through() {
        let a = Bounded::with_limit(1 << 20);
        for size in [1, 4096, 1 << 20] {
            let layout = Layout::from_size_align(size, 8).unwrap();
            unsafe {
                let p = a.alloc_zeroed(layout);
                assert!(!p.is_null());
                assert_eq!(*p.add(size - 1), 0);
                let p = a.realloc(p, layout, size / 2 + 1);
                assert!(!p.is_null());
                a.dealloc(p, Layout::from_size_align(size / 2 + 1, 8).unwrap());
            }
        }
    }

    /// Runs `body` when in the child; otherwise runs test `name` in a child
    /// process with `FUZZ_MALLOC_MB=1` and returns its signal and stderr.
    fn in_child(name: &str, body: impl FnOnce()) -> Option<(Option<i32>, String)> {
        use std::os::unix::process::ExitStatusExt;
        if std::env::var_os(CHILD).is_some() {
            body();
            return None; // not reached when the bound works: the parent sees exit 0
        }
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                &format!("bounded_alloc::tests::{name}"),
                "--exact",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .env("FUZZ_MALLOC_MB", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        Some((out.status.signal(), stderr))
    }

    /// One allocation over the bound read from `FUZZ_MALLOC_MB=1`: the child
    /// must die by SIGABRT (what libFuzzer records as a crash) with the
    /// message, not return.
    #[test]
    fn an_allocation_over_the_bound_aborts() {
        let run = || {
            let a = Bounded::from_env();
            let layout = Layout::from_size_align((1 << 20) + 1, 8).unwrap();
            let p = unsafe { a.alloc(layout) };
            unsafe { a.dealloc(p, layout) };
        };
        let Some((signal, stderr)) = in_child("an_allocation_over_the_bound_aborts", run) else {
            return;
        };
        assert_eq!(signal, Some(6), "the child must abort; stderr: {stderr}");
        assert!(
            stderr.contains("one allocation of 1048577 bytes exceeds the bound of 1 MiB"),
            "stderr: {stderr}"
        );
    }

    #[test]
    fn a_reallocation_over_the_bound_aborts_too() {
        let run = || {
            let a = Bounded::from_env();
            let small = Layout::from_size_align(16, 8).unwrap();
            let p = unsafe { a.realloc(a.alloc(small), small, 2 << 20) };
            unsafe { a.dealloc(p, Layout::from_size_align(2 << 20, 8).unwrap()) };
        };
        let Some((signal, stderr)) = in_child("a_reallocation_over_the_bound_aborts_too", run)
        else {
            return;
        };
        assert_eq!(signal, Some(6), "the child must abort; stderr: {stderr}");
        assert!(
            stderr.contains("of 2097152 bytes exceeds"),
            "stderr: {stderr}"
        );
    }
}

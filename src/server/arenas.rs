//! glibc's malloc arenas, capped for `serve` (issue 19).
//!
//! glibc gives each thread that contends for the heap its own arena, up to eight per core,
//! and memory freed into an arena mostly stays with it. Standin's reads, PIN checks and feed
//! parsing run on tokio's blocking threads, so under desks and kiosks a dozen arenas each kept
//! a few MB: measured with `cargo bench --bench footprint` on a million receipts (small page
//! caches), RSS under desks and kiosks peaked at 45-52 MB with the default and 34-36 MB with
//! two arenas. It is not free: in paired runs desks made about 20% fewer lookups per second
//! with 2 (or 4) arenas than with glibc's default, threads waiting on the arenas' locks
//! (README, "Benchmarks"); `GLIBC_TUNABLES=glibc.malloc.arena_max=16` lifts it. The cap is a glibc tunable read only at start-up, set from the environment
//! (`GLIBC_TUNABLES`); setting it from inside takes `mallopt`, which needs unsafe code, so
//! `serve` re-executes itself once with the tunable added.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

const TUNABLE: &str = "glibc.malloc.arena_max";
/// One per core of the store servers Standin is sized for (2).
const ARENAS: u32 = 2;
/// Set on the re-executed process, so it never loops (e.g. where the loader drops
/// `GLIBC_TUNABLES`). Not `STANDIN_…`: those are configuration keys.
const MARK: &str = "_STANDIN_ARENAS";

/// What `GLIBC_TUNABLES` should be, or `None` when it already caps the arenas (an operator's
/// own `glibc.malloc.arena_max` wins).
pub fn tunables_with_cap(current: Option<&str>) -> Option<String> {
    match current.filter(|c| !c.is_empty()) {
        Some(c) if c.split(':').any(|t| t.starts_with(&format!("{TUNABLE}="))) => None,
        Some(c) => Some(format!("{c}:{TUNABLE}={ARENAS}")),
        None => Some(format!("{TUNABLE}={ARENAS}")),
    }
}

/// Re-executes this process with the arena cap unless it already has it; returns only when
/// it has it, or when re-executing failed (then it says so and runs with glibc's default).
pub fn cap_malloc_arenas() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) || std::env::var_os(MARK).is_some() {
        return;
    }
    let current = std::env::var("GLIBC_TUNABLES").ok();
    let Some(tunables) = tunables_with_cap(current.as_deref()) else {
        return;
    };
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| OsString::from("standin"));
    let err = std::process::Command::new(exe)
        .arg0(arg0)
        .args(args)
        .env("GLIBC_TUNABLES", tunables)
        .env(MARK, "1")
        .exec();
    eprintln!(
        "standin: could not re-execute with {TUNABLE}={ARENAS} ({err}); running with glibc's default arenas"
    );
}

#[cfg(test)]
mod tests {
    use super::tunables_with_cap;

    #[test]
    fn the_cap_is_added_once_and_an_operators_own_wins() {
        assert_eq!(
            tunables_with_cap(None).as_deref(),
            Some("glibc.malloc.arena_max=2")
        );
        assert_eq!(
            tunables_with_cap(Some("")).as_deref(),
            Some("glibc.malloc.arena_max=2")
        );
        assert_eq!(
            tunables_with_cap(Some("glibc.malloc.tcache_count=0")).as_deref(),
            Some("glibc.malloc.tcache_count=0:glibc.malloc.arena_max=2")
        );
        assert_eq!(tunables_with_cap(Some("glibc.malloc.arena_max=8")), None);
    }
}

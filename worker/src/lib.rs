//! ferry-worker: the transfer engine ([`engine`]), its part planner
//! ([`plan`]), the worker loop ([`runner`]) and the command-line settings the
//! finder and the worker share ([`cli`]). `ferry-finder --workers N` runs the
//! same loop in-process.

pub mod cli;
pub mod completions;
pub mod engine;
pub mod health;
pub mod otel;
pub mod plan;
pub mod runner;
pub mod source_check;

/// The allocator of every binary built on this crate. With glibc, large freed
/// part buffers stayed resident in per-thread arenas and a 2 GiB copy peaked
/// at twice the in-flight budget; mimalloc returns freed pages promptly.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

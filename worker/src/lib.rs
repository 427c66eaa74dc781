//! ferry-worker: the transfer engine ([`engine`]), its part planner
//! ([`plan`]), the worker loop ([`runner`]) and the command-line settings the
//! finder and the worker share ([`cli`]). `ferry-finder --workers N` runs the
//! same loop in-process.

pub mod cli;
pub mod completions;
pub mod engine;
pub mod plan;
pub mod runner;

//! The integration tests of `cargo xtask`, one test binary: each module tests one command or step
//! end to end, with the fixtures and servers of `support`.
//!
//! Filter by module: `cargo test -p xtask --test it lock::` runs the lock tests only.

mod support;

mod deploy;
mod install;
mod layer;
mod lock;
mod lock_bench;
mod offline;
mod pack;
mod patch_cli;
mod project_root;
mod pylock_installers;
mod runtime;
mod verify;

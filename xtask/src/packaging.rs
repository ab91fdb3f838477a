//! The Python packaging vocabulary shared by `lock` and `layer`: wheel file names and platform
//! tags, the PEP 751 lock file, core metadata and a wheel's `RECORD`.
//!
//! Nothing here does I/O beyond reading and writing the files it describes; `lock` decides what
//! to lock and `layer` what to install, both in these terms.

pub mod core_metadata;
pub mod pylock;
pub mod record;
pub mod tags;
pub mod wheel_name;

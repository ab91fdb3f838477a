//! The Python packaging vocabulary shared by `lock` and `layer`: wheel file names and platform
//! tags, the target's marker environment, the PEP 751 lock file (and which of its packages an
//! exclusion leaves out), core metadata and a wheel's `RECORD`.
//!
//! Nothing here does I/O beyond reading and writing the files it describes; `lock` decides what
//! to lock and `layer` what to install, both in these terms.

pub(crate) mod core_metadata;
pub(crate) mod exclusion;
pub(crate) mod lock_fields;
pub(crate) mod markers;
pub mod pylock;
pub(crate) mod record;
pub(crate) mod tags;
pub mod wheel_name;

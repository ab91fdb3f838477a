//! The runtime step of `layer`: fetch the pinned python-build-standalone interpreter, extract it,
//! prune the standard library.

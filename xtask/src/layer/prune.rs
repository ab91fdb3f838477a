//! Named prune rules for installed distributions; each reports the files and bytes it removed.

//! RECORD files (PEP 376 / wheel spec): parse, and check every installed file against its hash.

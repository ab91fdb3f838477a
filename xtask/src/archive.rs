//! Safe extraction of interpreter archives (`.tar.gz` / `.tar.zst`), every entry treated as hostile.

//! Unpacking one wheel (binary distribution format spec), every member treated as hostile.

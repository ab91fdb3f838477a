//! The size report (JSON and Markdown) and the budget check.

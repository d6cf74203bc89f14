//! The `@nv` boot report. Work in progress.

//! The machine's NUMA proximity domains. Work in progress.

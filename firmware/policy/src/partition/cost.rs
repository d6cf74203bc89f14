//! What a partition costs in pool pages. Work in progress.

//! The second-level address translation builder (NPT and EPT formats). Work in progress.

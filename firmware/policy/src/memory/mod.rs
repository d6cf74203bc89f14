//! Physical memory per proximity domain. Work in progress.

//! Links the program as a static Linux executable when building for bare metal (the
//! `x86_64-unknown-none` target the test guests use: no libc, no dynamic linker); host builds
//! (`cargo test`/`clippy` on the workspace) get an empty `main`.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
        println!("cargo:rustc-link-arg-bins=-znoexecstack");
        println!("cargo:rustc-link-arg-bins=--entry=_start");
    }
}

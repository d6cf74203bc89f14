//! The UEFI application embeds the image named by `$NUMAVISOR_ELF` (`cargo xtask` builds the
//! image first and sets it); host builds (workspace `cargo test`/`clippy`) embed nothing.

fn main() {
    println!("cargo:rerun-if-env-changed=NUMAVISOR_ELF");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("uefi") {
        match std::env::var("NUMAVISOR_ELF") {
            Ok(path) if std::path::Path::new(&path).is_file() => {
                println!("cargo:rerun-if-changed={path}");
            }
            Ok(path) => panic!("NUMAVISOR_ELF={path} is not a file: build the image first (`cargo xtask build --efi` does both)"),
            Err(_) => panic!("NUMAVISOR_ELF is not set: the UEFI application embeds the image it names (`cargo xtask build --efi` sets it)"),
        }
    }
}

//! Link settings of the three controller binaries, the build script of `plumb-source`,
//! `plumb-render` and `plumb-sync` (each names this file in its `Cargo.toml`).
//!
//! Relative relocations are packed (`-z pack-relative-relocs`, the `DT_RELR` format). A
//! position-independent controller holds 20 000 to 57 000 of them, one per pointer in its
//! read-only data; as 24-byte `RELA` entries they are up to 1.3 MiB that the loader reads at
//! every start and that then stay resident for the life of the process. Packed they take a few
//! KiB; the executable stays position-independent. It needs glibc 2.36 or later at run time
//! (Debian 12, the runtime image, has it; an older glibc refuses the binary by name,
//! `GLIBC_ABI_DT_RELR`) and a linker that knows the option (rust-lld, Rust's default linker on
//! x86_64 Linux, or GNU ld 2.38 or later).

fn main() {
    println!("cargo:rerun-if-changed=../ops/controller-link.rs");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

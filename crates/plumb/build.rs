//! Linking choices that make the `plumb` front binary start fast: `plumb build` of a
//! kustomization is one process per render, so what the loader does before `main` is paid on
//! every render.
//!
//! - The front is linked position-dependent (`-no-pie`): a position-independent executable
//!   spends part of every start applying its relocations. `plumb-cli` stays
//!   position-independent.
//! - The unwinder (`libgcc_eh.a`, GCC's static unwinder, shipped beside the `crtbegin.o` every
//!   link uses) is linked into this package's binaries rather than loaded from `libgcc_s.so.1`:
//!   one shared library less to find, map and relocate at each start. Rust's own
//!   `crt-static` builds link the same archive.

fn main() {
    println!("cargo:rustc-link-arg-bin=plumb=-no-pie");
    println!("cargo:rustc-link-lib=static=gcc_eh");
}

//! Links the `plumb` front binary position-dependent (`-no-pie`): a position-independent
//! executable spends part of every start applying its relocations, a cost paid once per
//! `plumb build` render; the front only reads local files and execs `plumb-cli`, which stays
//! position-independent.

fn main() {
    println!("cargo:rustc-link-arg-bin=plumb=-no-pie");
}

//! The language of the API's CEL fields (Policy rules, `Sync.spec.healthCheckExprs`): CEL's
//! standard library (`has()`, `all`, `exists`, `exists_one`, `map`, `filter`, `size`,
//! `startsWith`, `endsWith`, `contains`, `matches`, `in`) plus the strings (`lowerAscii`,
//! `upperAscii`, `split`, `replace`, `trim`, `join`, `indexOf`, ...) and lists extensions, as
//! Kubernetes' CEL offers. Every controller compiles and runs them in this one environment, so an
//! expression means the same wherever it is written.

use std::sync::{Arc, OnceLock};

/// The CEL environment every expression of the API is compiled and run in.
pub fn cel_env() -> Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = cel::Env::stdlib();
        // Registering the bundled extensions on a fresh environment cannot conflict.
        let _ = env.add_extension(cel::extensions::strings);
        let _ = env.add_extension(cel::extensions::lists);
        Arc::new(env)
    })
    .clone()
}

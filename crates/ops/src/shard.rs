//! Sharding by label, as Flux does: an object labelled `plumb.dev/shard: <key>` is reconciled
//! only by the controller started with that shard key; a controller without a key reconciles
//! every object that has no shard label. So several controller instances (or tests) can share
//! one cluster without fighting over objects.

/// The label that assigns an object to a shard.
pub const SHARD_LABEL: &str = "plumb.dev/shard";

/// The label selector a controller watches with: `plumb.dev/shard=<key>` for a shard, else
/// `!plumb.dev/shard` (unsharded objects only).
pub fn label_selector(shard: Option<&str>) -> String {
    match shard {
        Some(key) => format!("{SHARD_LABEL}={key}"),
        None => format!("!{SHARD_LABEL}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharded_and_unsharded_selectors_are_disjoint() {
        assert_eq!(label_selector(Some("a")), "plumb.dev/shard=a");
        assert_eq!(label_selector(None), "!plumb.dev/shard");
    }
}

//! What a controller watches: one namespace or all, and which objects by label. Sharding
//! follows Flux's convention: an object labelled `plumb.dev/shard: <key>` is reconciled only by
//! the controllers started with `--watch-label-selector=plumb.dev/shard=<key>`; the default
//! selector (`!plumb.dev/shard`) takes every object without a shard label. So several
//! controller instances (or tests) share one cluster without fighting over objects.

use kube::runtime::watcher;
use sha2::Digest as _;

/// The label that assigns an object to a shard.
pub const SHARD_LABEL: &str = "plumb.dev/shard";

/// The default `--watch-label-selector`: every object not assigned to a shard.
pub const DEFAULT_WATCH_SELECTOR: &str = "!plumb.dev/shard";

/// The watch flags every controller takes (Flux's spelling where Flux has one).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct WatchScope {
    /// Watch only this namespace (all namespaces when unset).
    #[arg(id = "watch_namespace", long = "watch-namespace", alias = "namespace")]
    pub namespace: Option<String>,
    /// Reconcile only objects matching this label selector. The default leaves objects
    /// labelled `plumb.dev/shard` to the controllers started with
    /// `plumb.dev/shard=<key>`; an empty value takes every object.
    #[arg(
        id = "watch_label_selector",
        long = "watch-label-selector",
        default_value = DEFAULT_WATCH_SELECTOR
    )]
    pub label_selector: String,
    /// Deprecated spelling of `--watch-label-selector=plumb.dev/shard=<key>`.
    #[arg(long = "shard", hide = true, conflicts_with = "watch_label_selector")]
    pub shard: Option<String>,
}

impl Default for WatchScope {
    fn default() -> Self {
        Self {
            namespace: None,
            label_selector: DEFAULT_WATCH_SELECTOR.to_owned(),
            shard: None,
        }
    }
}

impl WatchScope {
    /// Every object of one shard, in every namespace.
    pub fn shard(key: &str) -> Self {
        Self {
            label_selector: format!("{SHARD_LABEL}={key}"),
            ..Self::default()
        }
    }

    /// The label selector in force (the deprecated `--shard` spelled out).
    pub fn selector(&self) -> String {
        match &self.shard {
            Some(key) => format!("{SHARD_LABEL}={key}"),
            None => self.label_selector.clone(),
        }
    }

    /// The watcher configuration selecting this scope's objects.
    pub fn watcher_config(&self) -> watcher::Config {
        let selector = self.selector();
        let config = watcher::Config::default();
        if selector.is_empty() {
            config
        } else {
            config.labels(&selector)
        }
    }

    /// An API over this scope's namespace (or all namespaces) for a namespaced kind.
    pub fn api<K>(&self, client: kube::Client) -> kube::Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.namespace {
            Some(ns) => kube::Api::namespaced(client, ns),
            None => kube::Api::all(client),
        }
    }

    /// The name of the leader Lease of `controller` (e.g. `plumb-source-controller`) for this
    /// scope: the plain name for the default scope, `<controller>-<key>` for the shard
    /// `plumb.dev/shard=<key>`, and `<controller>-<hash>` for any other scope, so two shards
    /// never share a Lease.
    pub fn lease_name(&self, controller: &str) -> String {
        let selector = self.selector();
        if self.namespace.is_none() && selector == DEFAULT_WATCH_SELECTOR {
            return controller.to_owned();
        }
        let key = selector.strip_prefix(&format!("{SHARD_LABEL}="));
        if let (None, Some(key)) = (&self.namespace, key)
            && !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && controller.len() + key.len() < 63
        {
            return format!("{controller}-{key}");
        }
        let mut h = sha2::Sha256::new();
        h.update(self.namespace.as_deref().unwrap_or_default().as_bytes());
        h.update([0]);
        h.update(selector.as_bytes());
        format!("{controller}-{}", &hex::encode(h.finalize())[..10])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        scope: WatchScope,
    }

    fn parse(args: &[&str]) -> Result<WatchScope, clap::Error> {
        Flags::try_parse_from(std::iter::once("c").chain(args.iter().copied())).map(|f| f.scope)
    }

    #[test]
    fn the_default_scope_leaves_sharded_objects_alone() {
        let s = parse(&[]).unwrap();
        assert_eq!(s, WatchScope::default());
        assert_eq!(s.selector(), "!plumb.dev/shard");
        assert_eq!(WatchScope::shard("a").selector(), "plumb.dev/shard=a");
    }

    #[test]
    fn old_spellings_still_parse() {
        let s = parse(&["--namespace=team", "--shard=a"]).unwrap();
        assert_eq!(s.namespace.as_deref(), Some("team"));
        assert_eq!(s.selector(), "plumb.dev/shard=a");
        let s = parse(&["--watch-namespace=team", "--watch-label-selector="]).unwrap();
        assert_eq!(s.namespace.as_deref(), Some("team"));
        assert_eq!(s.selector(), "");
        assert!(
            parse(&["--shard=a", "--watch-label-selector=x=y"]).is_err(),
            "two selectors"
        );
    }

    #[test]
    fn every_scope_has_a_lease_of_its_own() {
        let c = "plumb-sync-controller";
        assert_eq!(WatchScope::default().lease_name(c), c);
        assert_eq!(
            WatchScope::shard("blue").lease_name(c),
            "plumb-sync-controller-blue"
        );
        let odd = WatchScope::shard("Blue_1");
        let other = WatchScope {
            label_selector: "team=x".into(),
            ..WatchScope::default()
        };
        let in_ns = WatchScope {
            namespace: Some("blue".into()),
            ..WatchScope::default()
        };
        let names: std::collections::BTreeSet<String> = [
            &odd,
            &other,
            &in_ns,
            &WatchScope::shard("blue"),
            &WatchScope::default(),
        ]
        .iter()
        .map(|s| s.lease_name(c))
        .collect();
        assert_eq!(names.len(), 5, "{names:?}");
        for name in &names {
            assert!(
                name.len() <= 63
                    && name
                        .chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-'),
                "{name} is a valid Lease name"
            );
        }
        assert_eq!(in_ns.lease_name(c), in_ns.clone().lease_name(c), "stable");
    }
}

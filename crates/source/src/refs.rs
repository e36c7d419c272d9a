//! Choosing the commit to fetch from a remote's advertised refs: branch, tag, semver range over
//! tags, commit (alone or within a branch), full ref name, or the remote HEAD. Pure functions
//! over the ref list, so every rule is unit-tested without a server.

use plumb_api::Revision;
use plumb_api::source::GitRepositoryRef;

/// One ref the remote advertised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteRef {
    /// Full name, e.g. `refs/heads/main`, `refs/tags/v1^{}` (peeled annotated tag) or `HEAD`.
    pub name: String,
    /// The object id the ref points at (40 hex digits).
    pub oid: String,
    /// For `HEAD`, the ref it points to when the server says so.
    pub symref_target: Option<String>,
}

/// What to fetch and which revision it yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Refspecs that bring the commit into the cache (empty when the commit is already known).
    pub refspecs: Vec<String>,
    /// The commit the artifact is built from, when known from the listing alone (None: a bare
    /// commit that has to be looked up after fetching).
    pub commit: Option<String>,
    /// The reference part of the revision (`main`, `v1.0.0`, `refs/pull/1/head`), None for a
    /// bare commit.
    pub revision_ref: Option<String>,
    /// For `commit` within `branch`: the branch tip the commit must be reachable from.
    pub within_branch_tip: Option<String>,
}

impl Target {
    /// The revision for `commit` reached through this target.
    pub fn revision(&self, commit: &str) -> Result<Revision, plumb_api::revision::ParseError> {
        Revision::new(self.revision_ref.as_deref(), commit)
    }
}

/// Why no commit could be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    /// The branch, tag, ref or remote HEAD does not exist.
    #[error("{0} not found in the remote")]
    NotFound(String),
    /// No tag satisfies the semver range.
    #[error("no tag matches semver range {0:?}")]
    NoSemverMatch(String),
    /// The semver range does not parse.
    #[error("semver range {range:?}: {message}")]
    InvalidSemver {
        /// The range as written.
        range: String,
        /// What is wrong with it.
        message: String,
    },
}

fn find<'a>(refs: &'a [RemoteRef], name: &str) -> Option<&'a RemoteRef> {
    refs.iter().find(|r| r.name == name)
}

/// The commit a tag points at: the peeled `^{}` entry for annotated tags, else the tag itself.
fn tag_commit(refs: &[RemoteRef], tag: &str) -> Option<String> {
    let full = format!("refs/tags/{tag}");
    find(refs, &format!("{full}^{{}}"))
        .or_else(|| find(refs, &full))
        .map(|r| r.oid.clone())
}

fn fetch_spec(full: &str) -> String {
    format!("+{full}:{full}")
}

/// The highest tag (by semver, a leading `v` allowed) that satisfies `range`.
pub fn select_semver<'a>(
    tags: impl IntoIterator<Item = &'a str>,
    range: &str,
) -> Result<&'a str, RefError> {
    let req = semver::VersionReq::parse(range).map_err(|e| RefError::InvalidSemver {
        range: range.to_owned(),
        message: e.to_string(),
    })?;
    tags.into_iter()
        .filter_map(|t| {
            let v = semver::Version::parse(t.strip_prefix('v').unwrap_or(t)).ok()?;
            req.matches(&v).then_some((v, t))
        })
        // On equal versions (v1.0.0 and 1.0.0) prefer the lexically greater name, for stability.
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)))
        .map(|(_, t)| t)
        .ok_or_else(|| RefError::NoSemverMatch(range.to_owned()))
}

/// Chooses what to fetch for `reference` (the remote HEAD when None) from `refs`.
pub fn resolve(
    reference: Option<&GitRepositoryRef>,
    refs: &[RemoteRef],
) -> Result<Target, RefError> {
    let r = reference.cloned().unwrap_or_default();
    let commit = r.commit.as_deref().map(str::to_ascii_lowercase);
    if let Some(branch) = &r.branch {
        let full = format!("refs/heads/{branch}");
        let tip =
            find(refs, &full).ok_or_else(|| RefError::NotFound(format!("branch {branch:?}")))?;
        return Ok(Target {
            refspecs: vec![fetch_spec(&full)],
            commit: Some(commit.clone().unwrap_or_else(|| tip.oid.clone())),
            revision_ref: Some(branch.clone()),
            within_branch_tip: commit.map(|_| tip.oid.clone()),
        });
    }
    if let Some(tag) = &r.tag {
        let oid =
            tag_commit(refs, tag).ok_or_else(|| RefError::NotFound(format!("tag {tag:?}")))?;
        return Ok(tag_target(tag, oid));
    }
    if let Some(range) = &r.semver {
        let tags = refs
            .iter()
            .filter_map(|r| r.name.strip_prefix("refs/tags/"))
            .filter(|t| !t.ends_with("^{}"));
        let tag = select_semver(tags, range)?;
        let oid =
            tag_commit(refs, tag).ok_or_else(|| RefError::NotFound(format!("tag {tag:?}")))?;
        return Ok(tag_target(tag, oid));
    }
    if let Some(name) = &r.name {
        let oid = tag_commit_for_full(refs, name)
            .ok_or_else(|| RefError::NotFound(format!("ref {name:?}")))?;
        return Ok(Target {
            refspecs: vec![fetch_spec(name)],
            commit: Some(oid),
            revision_ref: Some(name.clone()),
            within_branch_tip: None,
        });
    }
    if let Some(commit) = commit {
        // A bare commit: fetch every branch and tag, then look it up.
        return Ok(Target {
            refspecs: vec![fetch_spec("refs/heads/*"), fetch_spec("refs/tags/*")],
            commit: Some(commit),
            revision_ref: None,
            within_branch_tip: None,
        });
    }
    default_branch(refs)
}

fn tag_commit_for_full(refs: &[RemoteRef], name: &str) -> Option<String> {
    find(refs, &format!("{name}^{{}}"))
        .or_else(|| find(refs, name))
        .map(|r| r.oid.clone())
}

fn tag_target(tag: &str, oid: String) -> Target {
    Target {
        refspecs: vec![fetch_spec(&format!("refs/tags/{tag}"))],
        commit: Some(oid),
        revision_ref: Some(tag.to_owned()),
        within_branch_tip: None,
    }
}

/// The branch the remote HEAD points at: the advertised symref, else the branch whose tip is
/// HEAD's commit (preferring `main`, then `master`, then the first by name).
fn default_branch(refs: &[RemoteRef]) -> Result<Target, RefError> {
    let head = find(refs, "HEAD").ok_or_else(|| RefError::NotFound("remote HEAD".to_owned()))?;
    let full = match head
        .symref_target
        .as_deref()
        .filter(|t| t.starts_with("refs/heads/"))
    {
        Some(t) => t.to_owned(),
        None => {
            let mut candidates: Vec<&str> = refs
                .iter()
                .filter(|r| r.oid == head.oid && r.name.starts_with("refs/heads/"))
                .map(|r| r.name.as_str())
                .collect();
            candidates.sort_by_key(|n| (*n != "refs/heads/main", *n != "refs/heads/master", *n));
            candidates
                .first()
                .map(|s| (*s).to_owned())
                .ok_or_else(|| RefError::NotFound("branch of remote HEAD".to_owned()))?
        }
    };
    let tip = find(refs, &full)
        .map(|r| r.oid.clone())
        .unwrap_or_else(|| head.oid.clone());
    let branch = full.trim_start_matches("refs/heads/").to_owned();
    Ok(Target {
        refspecs: vec![fetch_spec(&full)],
        commit: Some(tip),
        revision_ref: Some(branch),
        within_branch_tip: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "cccccccccccccccccccccccccccccccccccccccc";
    const D: &str = "dddddddddddddddddddddddddddddddddddddddd";

    fn r(name: &str, oid: &str) -> RemoteRef {
        RemoteRef {
            name: name.into(),
            oid: oid.into(),
            symref_target: None,
        }
    }

    fn refs() -> Vec<RemoteRef> {
        vec![
            RemoteRef {
                name: "HEAD".into(),
                oid: A.into(),
                symref_target: Some("refs/heads/main".into()),
            },
            r("refs/heads/main", A),
            r("refs/heads/dev", B),
            r("refs/tags/v1.0.0", B),
            r("refs/tags/v1.2.0", C),
            r("refs/tags/v1.2.0^{}", D),
            r("refs/tags/v2.0.0-rc.1", A),
            r("refs/tags/not-semver", A),
            r("refs/pull/7/head", C),
        ]
    }

    fn rev(reference: GitRepositoryRef) -> String {
        let t = resolve(Some(&reference), &refs()).unwrap();
        t.revision(t.commit.as_deref().unwrap())
            .unwrap()
            .to_string()
    }

    #[test]
    fn default_is_the_remote_head_branch() {
        let t = resolve(None, &refs()).unwrap();
        assert_eq!(t.revision(A).unwrap().to_string(), format!("main@sha1:{A}"));
        assert_eq!(t.refspecs, ["+refs/heads/main:refs/heads/main"]);
    }

    #[test]
    fn head_without_symref_falls_back_to_a_branch_with_the_same_commit() {
        let mut list = refs();
        list[0].symref_target = None;
        list[0].oid = B.into();
        let t = resolve(None, &list).unwrap();
        assert_eq!(t.revision_ref.as_deref(), Some("dev"));
    }

    #[test]
    fn branch_tag_and_full_ref_revisions() {
        assert_eq!(
            rev(GitRepositoryRef {
                branch: Some("dev".into()),
                ..Default::default()
            }),
            format!("dev@sha1:{B}")
        );
        assert_eq!(
            rev(GitRepositoryRef {
                tag: Some("v1.0.0".into()),
                ..Default::default()
            }),
            format!("v1.0.0@sha1:{B}")
        );
        // An annotated tag resolves to the commit it peels to.
        assert_eq!(
            rev(GitRepositoryRef {
                tag: Some("v1.2.0".into()),
                ..Default::default()
            }),
            format!("v1.2.0@sha1:{D}")
        );
        assert_eq!(
            rev(GitRepositoryRef {
                name: Some("refs/pull/7/head".into()),
                ..Default::default()
            }),
            format!("refs/pull/7/head@sha1:{C}")
        );
    }

    #[test]
    fn commit_alone_and_within_branch() {
        assert_eq!(
            rev(GitRepositoryRef {
                commit: Some(C.to_uppercase()),
                ..Default::default()
            }),
            format!("sha1:{C}")
        );
        let t = resolve(
            Some(&GitRepositoryRef {
                branch: Some("main".into()),
                commit: Some(C.into()),
                ..Default::default()
            }),
            &refs(),
        )
        .unwrap();
        assert_eq!(t.revision(C).unwrap().to_string(), format!("main@sha1:{C}"));
        assert_eq!(t.within_branch_tip.as_deref(), Some(A));
    }

    #[test]
    fn semver_picks_the_highest_matching_tag() {
        assert_eq!(
            rev(GitRepositoryRef {
                semver: Some(">=1.0.0, <2.0.0".into()),
                ..Default::default()
            }),
            format!("v1.2.0@sha1:{D}")
        );
        assert_eq!(
            rev(GitRepositoryRef {
                semver: Some("~1.0".into()),
                ..Default::default()
            }),
            format!("v1.0.0@sha1:{B}")
        );
        // Pre-releases only match ranges that name them, as semver says.
        assert_eq!(
            rev(GitRepositoryRef {
                semver: Some(">=2.0.0-rc.0".into()),
                ..Default::default()
            }),
            format!("v2.0.0-rc.1@sha1:{A}")
        );
        assert_eq!(
            select_semver(["1.0.0", "v1.0.0", "0.9.0"], "*").unwrap(),
            "v1.0.0"
        );
    }

    #[test]
    fn missing_refs_and_bad_ranges_are_errors() {
        let missing = |reference: GitRepositoryRef| resolve(Some(&reference), &refs()).unwrap_err();
        assert_eq!(
            missing(GitRepositoryRef {
                branch: Some("nope".into()),
                ..Default::default()
            }),
            RefError::NotFound("branch \"nope\"".into())
        );
        assert!(matches!(
            missing(GitRepositoryRef {
                tag: Some("v9".into()),
                ..Default::default()
            }),
            RefError::NotFound(_)
        ));
        assert!(matches!(
            missing(GitRepositoryRef {
                semver: Some(">=3".into()),
                ..Default::default()
            }),
            RefError::NoSemverMatch(_)
        ));
        assert!(matches!(
            missing(GitRepositoryRef {
                semver: Some("not a range".into()),
                ..Default::default()
            }),
            RefError::InvalidSemver { .. }
        ));
        assert!(resolve(None, &[]).is_err());
    }
}

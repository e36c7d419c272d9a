//! The HTML of the pages. maud escapes every value it inserts, so names, messages and Event
//! texts from the cluster cannot inject markup; the only script is `assets/app.js`.

use maud::{DOCTYPE, Markup, html};
use plumb_api::Sync;

use super::drift::{ObjectDrift, Transition};
use super::model::{
    EventRow, Finding, Level, ObjectRow, Overview, PolicyRow, State, Step, SyncRow, short_revision,
};
use super::tracker::Activity;

/// The stylesheet, served at `/assets/app.css`.
pub const CSS: &str = include_str!("assets/app.css");
/// The script, served at `/assets/app.js`.
pub const JS: &str = include_str!("assets/app.js");

/// What every page shares: the scope shown in the header and the CSRF token of the actions.
pub struct Frame<'a> {
    /// `namespace team` or `all namespaces`.
    pub scope: &'a str,
    /// This process's CSRF token.
    pub csrf: &'a str,
    /// The store's version the page was built at (see `Store::version`).
    pub version: u64,
}

/// A whole page around `content`; `filter` adds the overview's filter box.
pub fn page(frame: &Frame<'_>, title: &str, filter: bool, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · plumb" }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body data-version=(frame.version) {
                a.skip href="#live" { "Skip to content" }
                header.top {
                    a.brand href="/" { "plumb" }
                    span.scope { (frame.scope) }
                    span #live-status .chip.idle role="status" { "Connecting…" }
                }
                @if filter {
                    div.toolbar {
                        label for="filter" { "Filter" }
                        input #filter type="search" placeholder="name, namespace, path, state…" autocomplete="off";
                    }
                }
                main #live tabindex="-1" { (content) }
                div #notice role="status" aria-live="polite" {}
                dialog #confirm aria-labelledby="confirm-title" aria-describedby="confirm-text" {
                    form method="post" action="/action" {
                        h2 #confirm-title { "Confirm" }
                        p #confirm-text {}
                        input type="hidden" name="csrf" value=(frame.csrf);
                        input type="hidden" name="kind";
                        input type="hidden" name="namespace";
                        input type="hidden" name="name";
                        input type="hidden" name="verb";
                        div.buttons {
                            button.primary type="submit" { "Confirm" }
                            button type="button" data-close { "Cancel" }
                        }
                    }
                }
            }
        }
    }
}

fn level_class(level: Level) -> &'static str {
    match level {
        Level::Good => "good",
        Level::Progress => "progress",
        Level::Bad => "bad",
        Level::Idle => "idle",
    }
}

/// The header row of a table with these column names.
fn header_row(columns: &[&str]) -> Markup {
    html! { tr { @for c in columns { th scope="col" { (c) } } } }
}

fn chip(state: &State) -> Markup {
    html! { span class={ "chip " (level_class(state.level)) } { (state.label) } }
}

/// A state with its reason and message, for tables.
fn state_cell(state: &State) -> Markup {
    html! {
        (chip(state))
        @if !state.reason.is_empty() { " " code.reason { (state.reason) } }
        @if !state.message.is_empty() { div.message { (state.message) } }
    }
}

/// The overview's content.
pub fn overview(o: &Overview, problems: &[(String, String)]) -> Markup {
    let c = &o.counts;
    html! {
        h1 { "Overview" }
        (problem_list(problems))
        ul.counts aria-label="Syncs" {
            li { strong { (c.syncs) } " Syncs" }
            li.good { strong { (c.ready) } " Ready" }
            li.bad { strong { (c.failing) } " failing" }
            li.progress { strong { (c.drifting) } " drifting" }
            li.idle { strong { (c.suspended) } " suspended" }
        }
        h2 { "Sources and their Syncs" }
        @if o.sources.is_empty() {
            p { "No GitRepositories or Syncs here." }
        }
        @for s in &o.sources {
            section.source data-filter=(format!("{} {} {} {}", s.namespace, s.name, s.url, s.state.label)) {
                h3 {
                    "GitRepository " span.name { (s.namespace) "/" (s.name) } " " (chip(&s.state))
                }
                dl.facts {
                    @if !s.url.is_empty() { dt { "URL" } dd { code { (s.url) } } }
                    dt { "Revision" } dd { code { (s.revision.as_deref().unwrap_or("none yet")) } }
                    @if let Some(c) = &s.committed { dt { "Committed" } dd { (c) } }
                    @if let Some(p) = &s.published { dt { "Artifact published" } dd { (p) } }
                    @if !s.state.message.is_empty() {
                        dt { "Why" } dd { code.reason { (s.state.reason) } " " (s.state.message) }
                    }
                }
                @if s.syncs.is_empty() {
                    p.muted { "No Sync uses it." }
                } @else {
                    table.syncs {
                        caption.visually-hidden { "Syncs using GitRepository " (s.namespace) "/" (s.name) }
                        thead { (header_row(&["Sync", "Path", "Applied", "State", "Drift", "Policies"])) }
                        tbody { @for row in &s.syncs { (sync_row(row)) } }
                    }
                }
            }
        }
        h2 { "Policies" }
        @match &o.policies {
            Err(why) => {
                p.unreadable #policies-unreadable {
                    "Policies cannot be shown: they are cluster-scoped, and reading them failed ("
                    (why) "). Which Policies govern each Sync is therefore not known here; "
                    "a ClusterRole granting get, list and watch on policies.policy.plumb.dev would show them."
                }
            }
            Ok(policies) if policies.is_empty() => { p.muted { "No Policies." } }
            Ok(policies) => { (policy_table(policies)) }
        }
    }
}

fn policy_table(policies: &[PolicyRow]) -> Markup {
    html! {
            table.policies {
                thead { (header_row(&["Policy", "Rules", "Governs", "State"])) }
                tbody {
                    @for p in policies {
                        tr data-filter=(format!("{} {}", p.name, p.state.label)) {
                            td { (p.name) }
                            td { (p.rules) }
                            td { @if let Some(n) = p.governs { (n) " Syncs" } @else { "–" } }
                            td { (state_cell(&p.state)) }
                        }
                    }
                }
            }
    }
}

fn sync_row(row: &SyncRow) -> Markup {
    let filter = format!(
        "{} {} {} {} {}",
        row.namespace,
        row.name,
        row.path,
        row.state.label,
        row.policies.as_deref().unwrap_or_default().join(" ")
    );
    html! {
        tr data-filter=(filter) {
            th scope="row" { a href=(format!("/sync/{}/{}", row.namespace, row.name)) { (row.namespace) "/" (row.name) } }
            td { code { (row.path) } }
            td { code { (row.applied.as_deref().unwrap_or("–")) } }
            td { (state_cell(&row.state)) }
            td {
                @if row.drifted.is_empty() { span.muted { "none" } }
                @else { span class="chip progress" { "Drifted" } " " (row.drifted.join(", ")) }
            }
            td { (policy_names(row.policies.as_deref())) }
        }
    }
}

/// The names of governing Policies: "none", or "not readable" when Policies cannot be read.
fn policy_names(names: Option<&[String]>) -> Markup {
    html! {
        @match names {
            None => span.muted { "not readable" },
            Some([]) => span.muted { "none" },
            Some(names) => (names.join(", ")),
        }
    }
}

fn problem_list(problems: &[(String, String)]) -> Markup {
    html! {
        @if !problems.is_empty() {
            section.problems aria-label="Problems" {
                h2 { "What this page cannot show" }
                ul { @for (topic, text) in problems { li { strong { (topic) } ": " (text) } } }
            }
        }
    }
}

/// Everything the Sync page shows.
pub struct SyncView<'a> {
    /// The Sync.
    pub sync: &'a Sync,
    /// Its chain.
    pub chain: Vec<Step>,
    /// Policy findings of its render.
    pub findings: Vec<Finding>,
    /// Its objects by stage.
    pub objects: Vec<(&'static str, Vec<ObjectRow>)>,
    /// Drift transitions seen by this process.
    pub activity: Vec<Activity>,
    /// Recent Events of the Sync and its source.
    pub events: Vec<EventRow>,
    /// What cannot be shown, and why.
    pub problems: Vec<(String, String)>,
    /// Names of the Policies governing it; `None` when Policies cannot be read.
    pub policies: Option<Vec<String>>,
}

fn action_button(
    kind: &str,
    namespace: &str,
    name: &str,
    verb: &str,
    label: &str,
    prompt: &str,
) -> Markup {
    // An id that survives the page's updates (they restore focus by id), and suspend/resume
    // swapping places.
    let slot = if matches!(verb, "suspend" | "resume") {
        "suspension"
    } else {
        verb
    };
    html! {
        button.action #(format!("action-{kind}-{slot}")) type="button" data-kind=(kind)
            data-namespace=(namespace) data-name=(name) data-verb=(verb) data-prompt=(prompt)
            { (label) }
    }
}

/// The Sync page's content.
pub fn sync_page(v: &SyncView<'_>) -> Markup {
    let sync = v.sync;
    let ns = sync.metadata.namespace.clone().unwrap_or_default();
    let name = sync.metadata.name.clone().unwrap_or_default();
    let status = sync.status.clone().unwrap_or_default();
    let source_ns = sync.spec.source_ref.namespace.clone().unwrap_or(ns.clone());
    let source = sync.spec.source_ref.name.clone();
    let subject = format!("Sync {ns}/{name}");
    html! {
        nav.crumbs aria-label="Breadcrumb" { a href="/" { "Overview" } " › " span { (subject) } }
        h1 { (subject) }
        div.actions role="group" aria-label="Actions" {
            (action_button("sync", &ns, &name, "reconcile", "Reconcile now",
                &format!("Ask the sync controller to reconcile {subject} now?")))
            @if sync.spec.suspend {
                (action_button("sync", &ns, &name, "resume", "Resume",
                    &format!("Resume {subject}? It applies the latest render and corrects drift again.")))
            } @else {
                (action_button("sync", &ns, &name, "suspend", "Suspend",
                    &format!("Suspend {subject}? Nothing is applied, pruned or corrected until it is resumed.")))
            }
            (action_button("source", &source_ns, &source, "reconcile", "Fetch source now",
                &format!("Ask the source controller to fetch GitRepository {source_ns}/{source} now?")))
        }
        (problem_list(&v.problems))
        dl.facts {
            dt { "Last handled reconcile request" }
            dd #last-handled { code { (status.last_handled_reconcile_at.as_deref().unwrap_or("none")) } }
            dt { "Last applied revision" }
            dd { code { (status.last_applied_revision.as_ref().map(|r| short_revision(&r.to_string())).unwrap_or_else(|| "none".into())) } }
            @if let Some(r) = &status.last_attempted_revision {
                dt { "Last attempted revision" } dd { code { (short_revision(&r.to_string())) } }
            }
            dt { "Settings" }
            dd {
                "interval " (sync.spec.interval) ", prune " (on_off(sync.spec.prune)) ", wait " (on_off(sync.spec.wait))
                ", self-heal " (on_off(sync.spec.self_heal))
                @if sync.spec.suspend { ", " strong { "suspended" } }
            }
            dt { "Governing Policies" }
            dd #governing { (policy_names(v.policies.as_deref())) }
            @if let Some(d) = &status.drift {
                dt { "Drift (sync controller)" }
                dd {
                    (d.corrections) " corrections"
                    @if let Some(t) = &d.last_detected_at { ", last detected " (t.strftime("%H:%M:%S")) }
                    @if let Some(t) = &d.last_corrected_at { ", last corrected " (t.strftime("%H:%M:%S")) }
                    @if !d.objects.is_empty() { ", drifted now: " (d.objects.join(", ")) }
                }
            }
        }
        h2 { "Chain" }
        ol.chain {
            @for step in &v.chain {
                li class={ "step " (level_class(step.state.level)) } {
                    div.step-title { (step.title) " " (chip(&step.state)) }
                    div { (step.subject) }
                    @if !step.state.reason.is_empty() { div { code.reason { (step.state.reason) } } }
                    @if !step.meaning.is_empty() { div.meaning { (step.meaning) } }
                    @if !step.state.message.is_empty() { div.message { (step.state.message) } }
                }
            }
        }
        @if !v.findings.is_empty() {
            h2 { "Policy findings" }
            table.findings {
                thead { (header_row(&["Action", "Policy", "Rule", "Object", "Message"])) }
                tbody {
                    @for f in &v.findings {
                        tr {
                            td { span class={ "chip " (if f.action == "Deny" { "bad" } else { "progress" }) } { (f.action) } }
                            td { (f.policy) } td { code { (f.rule) } } td { (f.object) } td { (f.message) }
                        }
                    }
                }
            }
        }
        h2 { "Objects" }
        @if v.objects.is_empty() { p.muted { "Nothing applied yet." } }
        @for (stage, rows) in &v.objects {
            h3 { (stage) }
            table.objects {
                thead { (header_row(&["Kind", "Namespace", "Name", "Health", "Drift"])) }
                tbody { @for row in rows { (object_row(row)) } }
            }
        }
        h2 { "Drift activity" }
        @if v.activity.is_empty() {
            p.muted { "No drift seen since this page's server started watching." }
        } @else {
            ol.activity {
                @for a in &v.activity {
                    li data-object=(a.object.to_string()) {
                        time { (a.at.strftime("%H:%M:%S")) } " "
                        (a.object.kind) " " (object_name(&a.object)) ": "
                        @match &a.transition {
                            Transition::Drifted(paths) => { span class="chip progress" { "Drifted" } " " (paths.join(", ")) }
                            Transition::Deleted => { span class="chip bad" { "Deleted" } }
                            Transition::Healed => { span class="chip good" { "Healed" } " back to what was applied" }
                        }
                    }
                }
            }
        }
        h2 { "Last reconciliations" }
        @if status.history.is_empty() {
            p.muted { "None recorded yet." }
        } @else {
            table.history {
                thead { (header_row(&["Time", "Revision", "Result", "Took"])) }
                tbody {
                    @for h in newest_first(&status.history) {
                        tr {
                            td { (h.time.strftime("%Y-%m-%d %H:%M:%S")) }
                            td { code { (h.revision.as_ref().map(|r| short_revision(&r.to_string())).unwrap_or_else(|| "–".into())) } }
                            td { code { (h.result) } }
                            td { (h.duration) }
                        }
                    }
                }
            }
        }
        h2 { "Recent Events" }
        @if v.events.is_empty() {
            p.muted { "No Events (they expire after an hour)." }
        } @else {
            table.events {
                thead { (header_row(&["Time", "Type", "Object", "Reason", "Message"])) }
                tbody {
                    @for e in &v.events {
                        tr {
                            td { (e.time) }
                            td { span class={ "chip " (if e.type_ == "Warning" { "bad" } else { "idle" }) } { (e.type_) } }
                            td { (e.object) } td { code { (e.reason) } } td { (e.message) }
                        }
                    }
                }
            }
        }
    }
}

fn newest_first(
    history: &[plumb_api::sync::ReconcileRecord],
) -> Vec<&plumb_api::sync::ReconcileRecord> {
    let mut records: Vec<_> = history.iter().collect();
    records.sort_by_key(|r| std::cmp::Reverse(r.time));
    records
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

fn object_name(id: &plumb_api::ObjectId) -> String {
    if id.namespace.is_empty() {
        id.name.clone()
    } else {
        format!("{}/{}", id.namespace, id.name)
    }
}

fn object_row(row: &ObjectRow) -> Markup {
    let anchor = format!("o-{}", row.id);
    html! {
        tr #(anchor) data-object=(row.id.to_string()) {
            td { (row.id.kind) }
            td { (if row.id.namespace.is_empty() { "–" } else { &row.id.namespace }) }
            td { (row.id.name) }
            td.health { (state_cell(&row.health)) }
            td.drift {
                @match &row.drift {
                    None => span.muted { "watching…" },
                    Some(ObjectDrift::InSync) => span class="chip good" { "In sync" },
                    Some(ObjectDrift::Missing) => span class="chip bad" { "Missing" },
                    Some(ObjectDrift::NotCompared(why)) => span.muted { "Not compared: " (why) },
                    Some(ObjectDrift::Drifted(fields)) => details #(format!("d-{}", row.id)) {
                        summary { span class="chip progress" { "Drifted" } " " (fields.len()) " field" (if fields.len() == 1 { "" } else { "s" }) }
                        pre.diff aria-label="Fields that differ: applied (−) and live (+)" {
                            @for f in fields {
                                span.del { "- " (f.path) ": " (f.applied) "   (applied)" } "\n"
                                span.add { "+ " (f.path) ": " (f.live) "   (live)" } "\n"
                            }
                        }
                    },
                }
            }
        }
    }
}

/// A page for something not found.
pub fn not_found(what: &str) -> Markup {
    html! {
        nav.crumbs { a href="/" { "Overview" } }
        h1 { "Not found" }
        p { (what) " does not exist, or your kubeconfig may not read it." }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::model::{Counts, SourceRow};

    #[test]
    fn names_and_messages_from_the_cluster_are_escaped() {
        let evil = "<script>alert(1)</script>";
        let state = State {
            level: Level::Bad,
            label: "Failed".into(),
            reason: "ApplyFailed".into(),
            message: evil.into(),
        };
        let o = Overview {
            counts: Counts::default(),
            sources: vec![SourceRow {
                namespace: "team".into(),
                name: "a\"onmouseover=\"x".into(),
                url: evil.into(),
                revision: None,
                committed: None,
                published: None,
                state: state.clone(),
                syncs: vec![SyncRow {
                    namespace: "team".into(),
                    name: evil.into(),
                    path: "./".into(),
                    applied: None,
                    state,
                    drifted: vec![],
                    policies: None,
                }],
            }],
            policies: Err(evil.into()),
        };
        let html = overview(&o, &[("watch".into(), evil.into())]).into_string();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("a\"onmouseover"), "{html}");
    }
}

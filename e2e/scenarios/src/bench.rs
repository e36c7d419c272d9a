//! What the benchmarks share: the fleet application every Sync (or Flux Kustomization) of a
//! fleet applies, the figures of a process read from `/proc`, and the API server's count of
//! write requests read from its `/metrics`.

use std::collections::BTreeMap;

/// One application of a fleet: a ServiceAccount, ConfigMap, Service and Deployment (0 replicas)
/// named by the substituted variable `id`, so each Sync's render is its own.
pub const FLEET_APP: &str = "apiVersion: v1
kind: ServiceAccount
metadata:
  name: app-${id}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: app-${id}
data:
  id: \"app-${id}\"
---
apiVersion: v1
kind: Service
metadata:
  name: app-${id}
spec:
  selector:
    app: app-${id}
  ports:
    - port: 80
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app-${id}
spec:
  replicas: 0
  selector:
    matchLabels:
      app: app-${id}
  template:
    metadata:
      labels:
        app: app-${id}
    spec:
      serviceAccountName: app-${id}
      containers:
        - name: app
          image: registry.example.com/app:1.0.0
";

/// A process's resource use so far, from `/proc/<pid>`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcStats {
    /// Peak resident set (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
    /// Resident set now (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Of the resident set now, anonymous memory (`RssAnon`: heap, stacks, pages the process
    /// wrote), KiB.
    pub anon_kib: u64,
    /// Of the resident set now, pages of mapped files (`RssFile`: the executable's code and
    /// read-only data, shared libraries), KiB.
    pub file_kib: u64,
    /// CPU time spent, user plus system, in seconds.
    pub cpu_seconds: f64,
}

/// The figures of process `pid`; `None` when it is gone or `/proc` cannot be read.
pub fn proc_stats(pid: u32) -> Option<ProcStats> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))?
            .split_whitespace()
            .next()?
            .parse::<u64>()
            .ok()
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start with the state, field 3;
    // utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    let cpu_ticks = ticks(11)? + ticks(12)?;
    Some(ProcStats {
        peak_rss_kib: kib("VmHWM:")?,
        rss_kib: kib("VmRSS:")?,
        anon_kib: kib("RssAnon:")?,
        file_kib: kib("RssFile:")?,
        cpu_seconds: cpu_ticks as f64 / clock_ticks_per_second(),
    })
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on every Linux this runs on,
/// asked once anyway).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The load averages of the machine (`/proc/loadavg`: 1, 5 and 15 minutes), to print beside a
/// figure.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// The body of a plain-HTTP GET of `url` (`http://host:port/path`), e.g. a controller's
/// `/metrics`; `None` when it cannot be had.
pub async fn http_get(url: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://")?;
    let (addr, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// Prints where the render and sync controllers of `controllers` spent their reconciles so
/// far, from their `/metrics` ([`phase_summary`]).
pub async fn print_phases(controllers: &crate::Controllers) {
    for c in [crate::Controller::Render, crate::Controller::Sync] {
        let Some(text) = http_get(&controllers.metrics_url(c)).await else {
            continue;
        };
        println!("  where the {c:?} controller's reconciles spent their time:");
        for row in phase_summary(&text) {
            println!("    {row}");
        }
    }
}

/// Where a controller's reconciles spent their time, from its `/metrics` text: per phase of
/// `plumb_reconcile_phase_duration_seconds` (and the whole reconcile), how many there were,
/// their total and mean seconds; plus the counters whose names contain `status`, and the sync
/// controller's passes by what woke them and what they did. One line each.
pub fn phase_summary(metrics: &str) -> Vec<String> {
    let value = |line: &str| line.rsplit(' ').next()?.parse::<f64>().ok();
    let mut rows: Vec<(String, f64, f64)> = Vec::new();
    let mut counters = Vec::new();
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        if line.starts_with("plumb_sync_passes_total{") {
            counters.push(line.to_owned());
            continue;
        }
        let Some((name, rest)) = line.split_once('{') else {
            if line.contains("status") {
                counters.push(line.to_owned());
            }
            continue;
        };
        let labels = rest.split_once('}').map_or("", |(l, _)| l);
        let (is_sum, base) = match name.strip_suffix("_sum") {
            Some(base) => (true, base),
            None => match name.strip_suffix("_count") {
                Some(base) => (false, base),
                None => continue,
            },
        };
        if !base.ends_with("reconcile_phase_duration_seconds")
            && !base.ends_with("reconcile_duration_seconds")
        {
            continue;
        }
        let Some(v) = value(line) else { continue };
        let key = if base.ends_with("phase_duration_seconds") {
            labels.to_owned()
        } else {
            format!("whole reconcile, {labels}")
        };
        let row = match rows.iter_mut().find(|r| r.0 == key) {
            Some(row) => row,
            None => {
                rows.push((key, 0.0, 0.0));
                rows.last_mut()
                    .unwrap_or_else(|| unreachable!("just pushed"))
            }
        };
        if is_sum {
            row.1 += v;
        } else {
            row.2 += v;
        }
    }
    let mut out: Vec<String> = rows
        .into_iter()
        .map(|(key, sum, count)| {
            let mean = if count > 0.0 { sum / count } else { 0.0 };
            format!(
                "{key}: {count:.0} times, {sum:.2} s in all, {:.1} ms each",
                mean * 1e3
            )
        })
        .collect();
    out.extend(counters);
    out
}

/// The API server's write requests so far, from its `/metrics` text
/// (`apiserver_request_total`): the count per verb and resource (`group/resource/subresource`,
/// empty parts left out), for every verb that changes something (not GET, LIST, WATCH).
pub fn write_requests(metrics: &str) -> BTreeMap<(String, String), f64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let label = |name: &str| {
            let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
            let end = labels[start..].find('"')? + start;
            Some(&labels[start..end])
        };
        let verb = label("verb").unwrap_or_default();
        if matches!(verb, "GET" | "LIST" | "WATCH" | "CONNECT") || label("dry_run") == Some("All") {
            continue;
        }
        let resource = [label("group"), label("resource"), label("subresource")]
            .into_iter()
            .flatten()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        *out.entry((verb.to_owned(), resource)).or_insert(0.0) += value;
    }
    out
}

/// The write requests of [`write_requests`] made between `before` and `after`, most first.
pub fn writes_between(
    before: &BTreeMap<(String, String), f64>,
    after: &BTreeMap<(String, String), f64>,
) -> Vec<(String, String, f64)> {
    let mut out: Vec<(String, String, f64)> = after
        .iter()
        .map(|((verb, res), n)| {
            let was = before
                .get(&(verb.clone(), res.clone()))
                .copied()
                .unwrap_or(0.0);
            (verb.clone(), res.clone(), n - was)
        })
        .filter(|(_, _, n)| *n > 0.0)
        .collect();
    out.sort_by(|a, b| {
        b.2.total_cmp(&a.2)
            .then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1)))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_figures_of_this_process_are_read() {
        // Spin until the kernel has counted a tick of CPU time (10 ms): the fields read as CPU
        // time must then show it.
        let start = std::time::Instant::now();
        let mut x = 1u64;
        let me = loop {
            for i in 0..1_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(i | 1));
            }
            let me = proc_stats(std::process::id()).expect("own /proc entry");
            if me.cpu_seconds > 0.0 || start.elapsed().as_secs() > 30 {
                break me;
            }
        };
        assert!(me.cpu_seconds > 0.0, "{me:?}");
        assert!(me.peak_rss_kib >= me.rss_kib && me.rss_kib > 0, "{me:?}");
        // The executable is mapped from a file, and the test's heap is anonymous.
        assert!(me.anon_kib > 0 && me.file_kib > 0, "{me:?}");
        assert!(me.anon_kib + me.file_kib <= me.rss_kib, "{me:?}");
        assert!(proc_stats(u32::MAX).is_none());
    }

    #[test]
    fn write_requests_are_counted_by_verb_and_resource() {
        let before_text = r#"# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="APPLY",version="v1"} 10
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="GET",version="v1"} 99
"#;
        let after_text = r#"apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="APPLY",version="v1"} 14
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="APPLY",version="v1"} 1
apiserver_request_total{code="200",component="apiserver",dry_run="All",group="",resource="configmaps",scope="resource",subresource="",verb="APPLY",version="v1"} 5
apiserver_request_total{code="200",component="apiserver",dry_run="",group="sync.plumb.dev",resource="syncs",scope="resource",subresource="status",verb="APPLY",version="v1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="configmaps",scope="resource",subresource="",verb="GET",version="v1"} 150
apiserver_request_total{code="201",component="apiserver",dry_run="",group="events.k8s.io",resource="events",scope="resource",subresource="",verb="POST",version="v1"} 2
"#;
        let writes = writes_between(&write_requests(before_text), &write_requests(after_text));
        let key = |v: &str, r: &str, n: f64| (v.to_owned(), r.to_owned(), n);
        assert_eq!(
            writes,
            [
                key("APPLY", "configmaps", 5.0),
                key("APPLY", "sync.plumb.dev/syncs/status", 3.0),
                key("POST", "events.k8s.io/events", 2.0),
            ]
        );
    }

    #[test]
    fn phases_are_summed_from_the_metrics_text() {
        let text = r#"# HELP plumb_reconcile_phase_duration_seconds x
plumb_reconcile_phase_duration_seconds_sum{kind="Sync",phase="apply"} 3.0
plumb_reconcile_phase_duration_seconds_count{kind="Sync",phase="apply"} 2
plumb_reconcile_phase_duration_seconds_bucket{kind="Sync",phase="apply",le="0.005"} 0
plumb_reconcile_duration_seconds_sum{kind="Sync",result="success"} 4.0
plumb_reconcile_duration_seconds_count{kind="Sync",result="success"} 4
plumb_sync_status_writes_total 7
plumb_sync_applied_objects_total 9
plumb_sync_passes_total{woken_by="object",did="wrote"} 3
"#;
        let rows = phase_summary(text);
        assert_eq!(
            rows,
            [
                r#"kind="Sync",phase="apply": 2 times, 3.00 s in all, 1500.0 ms each"#,
                r#"whole reconcile, kind="Sync",result="success": 4 times, 4.00 s in all, 1000.0 ms each"#,
                "plumb_sync_status_writes_total 7",
                r#"plumb_sync_passes_total{woken_by="object",did="wrote"} 3"#,
            ]
        );
    }
}

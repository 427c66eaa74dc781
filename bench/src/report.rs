//! `RESULTS.md` from a results file: medians of the timed rounds per
//! (set, direction, tool, setting), and each peer's ratio to ferry.
//!
//! "× ferry" is the peer's median wall time over ferry's at the same
//! setting: above 1 ferry is faster. The ceiling row instead shows the share
//! of the ceiling's throughput ferry reaches (ceiling time / ferry time).

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::suite::RunRecord;

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Medians of one group of runs.
#[derive(Debug, Clone)]
pub struct Row {
    /// Tool.
    pub tool: String,
    /// Setting.
    pub setting: String,
    /// Timed runs that succeeded.
    pub ok: usize,
    /// Timed runs in all.
    pub runs: usize,
    /// Median wall seconds.
    pub wall: f64,
    /// Median user+sys seconds.
    pub cpu: f64,
    /// Largest peak RSS, MiB.
    pub rss_mib: f64,
    /// Objects and bytes of the set.
    pub objects: usize,
    /// Bytes of the set.
    pub bytes: u64,
    /// Note.
    pub note: Option<String>,
    /// First error seen.
    pub error: Option<String>,
}

const TOOL_ORDER: [&str; 11] = [
    "ceiling",
    "ferry",
    "ferry-server-side",
    "ferry-nofsync",
    "ferry-gateway",
    "ferry diff",
    "dd",
    "rclone",
    "s3sync",
    "aws-cli",
    "",
];

fn tool_rank(t: &str) -> usize {
    TOOL_ORDER.iter().position(|x| *x == t).unwrap_or(TOOL_ORDER.len())
}

/// Groups timed runs by (set, direction) and then by (tool, setting).
pub fn rows(records: &[RunRecord]) -> BTreeMap<(String, String), Vec<Row>> {
    let mut groups: BTreeMap<(String, String, String, String), Vec<&RunRecord>> = BTreeMap::new();
    for r in records.iter().filter(|r| !r.warmup) {
        groups
            .entry((r.set.clone(), r.dir.clone(), r.tool.clone(), r.setting.clone()))
            .or_default()
            .push(r);
    }
    let mut out: BTreeMap<(String, String), Vec<Row>> = BTreeMap::new();
    for ((set, dir, tool, setting), runs) in groups {
        let good: Vec<&&RunRecord> = runs.iter().filter(|r| r.ok).collect();
        let last = runs.last().expect("a group has runs");
        out.entry((set, dir)).or_default().push(Row {
            tool,
            setting,
            ok: good.len(),
            runs: runs.len(),
            wall: median(good.iter().map(|r| r.wall).collect()),
            cpu: median(good.iter().map(|r| r.user + r.sys).collect()),
            rss_mib: good.iter().map(|r| r.rss_kib as f64 / 1024.0).fold(f64::NAN, f64::max),
            objects: last.objects,
            bytes: last.bytes,
            note: last.note.clone(),
            error: runs.iter().find_map(|r| r.error.clone()),
        });
    }
    for v in out.values_mut() {
        v.sort_by(|a, b| {
            tool_rank(&a.tool)
                .cmp(&tool_rank(&b.tool))
                .then(a.setting.cmp(&b.setting))
        });
    }
    out
}

fn ferry_wall(rows: &[Row], setting: &str) -> Option<f64> {
    rows.iter()
        .find(|r| r.tool == "ferry" && r.setting == setting && r.ok > 0)
        .map(|r| r.wall)
}

/// The Markdown tables (without the header the caller writes).
pub fn tables(records: &[RunRecord]) -> String {
    let mut s = String::new();
    // Data sets first, then the finder-scale cases.
    let mut groups: Vec<_> = rows(records).into_iter().collect();
    groups.sort_by_key(|((_, dir), _)| dir == "finder");
    for ((set, dir), rows) in groups {
        let finder = dir == "finder";
        let _ = writeln!(s, "\n### {set} — {dir}\n");
        if finder {
            let _ = writeln!(s, "| tool | runs ok | wall s | CPU s | peak RSS MiB | rclone ÷ ferry |");
            let _ = writeln!(s, "|---|---|---|---|---|---|");
        } else {
            let _ = writeln!(
                s,
                "| tool | setting | runs ok | wall s | MiB/s | CPU s/GiB | CPU s/1k obj | CPU × ceiling | peak RSS MiB | × ferry |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
        }
        for r in &rows {
            let ratio = if finder {
                match (r.tool.as_str(), ferry_wall(&rows, "default")) {
                    ("rclone", Some(f)) => format!("{:.2}", r.wall / f),
                    _ => String::new(),
                }
            } else {
                match (
                    r.tool.as_str(),
                    ferry_wall(&rows, &r.setting).or(ferry_wall(&rows, "default")),
                ) {
                    ("ferry", _) => "—".into(),
                    ("dd", Some(f)) => format!("ferry at {:.0} % of the disk", 100.0 * r.wall / f),
                    ("ceiling", Some(f)) => format!("ferry at {:.0} % of it", 100.0 * r.wall / f),
                    (_, Some(f)) if r.ok > 0 => format!("{:.2}", r.wall / f),
                    _ => "—".into(),
                }
            };
            let mut tool = r.tool.clone();
            if r.note.is_some() {
                tool.push_str(" ¹");
            }
            if r.ok < r.runs {
                tool.push_str(" ²");
            }
            if finder {
                let _ = writeln!(
                    s,
                    "| {tool} | {}/{} | {:.2} | {:.2} | {:.0} | {ratio} |",
                    r.ok, r.runs, r.wall, r.cpu, r.rss_mib
                );
            } else {
                let gib = r.bytes as f64 / (1u64 << 30) as f64;
                let ceiling_cpu = rows
                    .iter()
                    .find(|c| c.tool == "ceiling" && c.ok > 0)
                    .map(|c| c.cpu)
                    .filter(|c| *c > 0.0);
                let cpu_ratio = match ceiling_cpu {
                    Some(c) if r.ok > 0 && r.tool != "dd" => format!("{:.2}", r.cpu / c),
                    _ => "—".into(),
                };
                let mibs = r.bytes as f64 / (1u64 << 20) as f64 / r.wall;
                let _ = writeln!(
                    s,
                    "| {tool} | {} | {}/{} | {:.2} | {:.0} | {:.2} | {:.2} | {cpu_ratio} | {:.0} | {ratio} |",
                    r.setting,
                    r.ok,
                    r.runs,
                    r.wall,
                    mibs,
                    r.cpu / gib,
                    r.cpu / (r.objects as f64 / 1000.0),
                    r.rss_mib
                );
            }
        }
        let mut noted = std::collections::BTreeSet::new();
        for r in &rows {
            if let Some(n) = r.note.as_ref().filter(|_| noted.insert(r.tool.clone())) {
                let _ = writeln!(s, "\n¹ {}: {n}.", r.tool);
            }
            if let Some(e) = &r.error {
                let _ = writeln!(
                    s,
                    "\n² {} {}: {} of {} runs failed; first error: {}",
                    r.tool,
                    r.setting,
                    r.runs - r.ok,
                    r.runs,
                    e.replace('\n', " ")
                );
            }
        }
    }
    s
}

/// The results section of `RESULTS.md`: the tables, then the commands.
pub fn body(records: &[RunRecord]) -> String {
    format!("## Results\n{}\n## Commands\n\n{}", tables(records), commands(records))
}

/// The commands of the last round, one per (set, direction, tool, setting).
pub fn commands(records: &[RunRecord]) -> String {
    let mut seen = BTreeMap::new();
    for r in records {
        seen.insert(
            (r.set.clone(), r.dir.clone(), r.tool.clone(), r.setting.clone()),
            r.command.clone(),
        );
    }
    let mut s = String::from("```sh\n");
    for ((set, dir, tool, setting), c) in seen {
        let _ = writeln!(s, "# {set} {dir} {tool} {setting}\n{c}");
    }
    s.push_str("```\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(tool: &str, round: usize, wall: f64, ok: bool) -> RunRecord {
        RunRecord {
            round,
            warmup: round == 0,
            set: "A".into(),
            dir: "S3→S3".into(),
            tool: tool.into(),
            setting: "default".into(),
            wall,
            user: 1.0,
            sys: 1.0,
            rss_kib: 2048,
            objects: 1,
            bytes: 1 << 30,
            ok,
            error: (!ok).then(|| "boom".into()),
            command: format!("{tool} x y"),
            note: None,
        }
    }

    #[test]
    fn medians_skip_warmup_and_failures_and_ratio_is_peer_over_ferry() {
        let recs = vec![
            rec("ferry", 0, 100.0, true),
            rec("ferry", 1, 2.0, true),
            rec("ferry", 2, 4.0, true),
            rec("ferry", 3, 3.0, true),
            rec("rclone", 1, 6.0, true),
            rec("rclone", 2, 9.0, false),
            rec("rclone", 3, 6.0, true),
        ];
        let r = rows(&recs);
        let v = &r[&("A".to_string(), "S3→S3".to_string())];
        assert_eq!(v[0].tool, "ferry");
        assert_eq!(v[0].wall, 3.0);
        assert_eq!(v[1].ok, 2);
        let t = tables(&recs);
        assert!(t.contains("| 2.00 |"), "{t}");
        assert!(t.find("### A").is_some());
        assert!(t.contains("1 of 3 runs failed"), "{t}");
        assert_eq!(median(vec![1.0, 3.0]), 2.0);
    }
}

//! A model of ferry at a billion objects (`ferry-bench scale-model`): what
//! listing, the queue, the ledger and the workers need to move a bucket of
//! `objects` keys with a realistic size mix, and what it costs per million
//! objects of each size class. The request counts per object are ferry's
//! own estimate (`ferry_finder::cost`), which the suite checks against the
//! requests a real run sends; the rates are this machine's measurements
//! (`bench/RESULTS.md`) or the services' published limits, each named in
//! the output so the reader can replace it.

use ferry_finder::cost::{Model, Prices, Requests};

/// One size class of the mix.
struct Class {
    name: &'static str,
    /// Typical object size, bytes.
    size: u64,
    /// Share of the objects.
    share: f64,
}

const MIX: [Class; 4] = [
    Class {
        name: "tiny (4 KiB)",
        size: 4 << 10,
        share: 0.50,
    },
    Class {
        name: "small (128 KiB)",
        size: 128 << 10,
        share: 0.37,
    },
    Class {
        name: "medium (2 MiB)",
        size: 2 << 20,
        share: 0.1275,
    },
    Class {
        name: "large (256 MiB)",
        size: 256 << 20,
        share: 0.0025,
    },
];

/// The inputs of the model.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Objects in the bucket.
    pub objects: f64,
    /// One listing page's round trip, seconds.
    pub page_secs: f64,
    /// Ranges each finder or worker lists at once.
    pub ranges: f64,
    /// Processes listing (list jobs across the fleet).
    pub listers: f64,
    /// Seconds one worker slot spends per small object (GET, PUT, ledger).
    pub object_secs: f64,
    /// Slots (concurrent jobs) per worker process.
    pub slots: f64,
    /// Bytes per second one worker process moves on large objects.
    pub worker_bytes_per_sec: f64,
    /// The duration the copy should take, seconds.
    pub target_secs: f64,
    /// Messages one process queues per second (batches of 10).
    pub queue_per_sec: f64,
}

impl Default for Inputs {
    fn default() -> Self {
        Inputs {
            objects: 1e9,
            page_secs: 0.060,
            ranges: 8.0,
            listers: 64.0,
            object_secs: 0.060,
            slots: 32.0,
            worker_bytes_per_sec: 200.0 * 1024.0 * 1024.0,
            target_secs: 7.0 * 86_400.0,
            queue_per_sec: 1_000.0,
        }
    }
}

/// S3's request rate per prefix partition for GET/HEAD (LIST included).
const S3_READS_PER_SEC: f64 = 5_500.0;

fn model() -> Model {
    Model {
        threshold: 64 << 20,
        part_size: 16 << 20,
        server_side: false,
        local_src: false,
        local_dst: false,
        tags_copy: true,
    }
}

fn human_secs(s: f64) -> String {
    match s {
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7_200.0 => format!("{:.0} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.1} h", s / 3_600.0),
        s => format!("{:.1} days", s / 86_400.0),
    }
}

/// The report, in Markdown.
pub fn report(i: &Inputs) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    let bytes: f64 = MIX.iter().map(|c| c.share * i.objects * c.size as f64).sum();
    line(format!(
        "Inputs: page round trip {:.0} ms, {:.0} ranges per lister, {:.0} listers, {:.0} ms per small object per slot, {:.0} slots and {:.0} MiB/s per worker process. Request counts per object: `ferry_finder::cost` (checked against a real run by `tests/tests/cost.rs`).",
        i.page_secs * 1000.0,
        i.ranges,
        i.listers,
        i.object_secs * 1000.0,
        i.slots,
        i.worker_bytes_per_sec / 1_048_576.0
    ));
    line(String::new());
    line(format!(
        "Bucket: {:.0} objects, {:.2} PB, mix: {}.",
        i.objects,
        bytes / 1e15,
        MIX.iter()
            .map(|c| format!("{} % {}", c.share * 100.0, c.name))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    line(String::new());

    // Listing: one page per 1,000 keys on each side, the sides at once.
    let pages = (i.objects / 1000.0).ceil();
    line("## Listing".into());
    line(String::new());
    line("| listers | ranges each | time (page round trip) | bound by S3's 5,500 reads/s per prefix |".into());
    line("|---|---|---|---|".into());
    for (listers, ranges) in [(1.0, 1.0), (1.0, i.ranges), (i.listers, i.ranges)] {
        let by_latency = pages * i.page_secs / (listers * ranges);
        let by_rate = pages / S3_READS_PER_SEC;
        line(format!(
            "| {listers:.0} | {ranges:.0} | {} | {} |",
            human_secs(by_latency),
            human_secs(by_latency.max(by_rate))
        ));
    }
    line(String::new());

    // Requests, ledger writes and worker time, by class.
    let mut total = Requests::default();
    let mut worker_secs = 0.0;
    line("## Per size class".into());
    line(String::new());
    line("| class | objects | requests per object (GET/HEAD, PUT-class) | ledger writes per object | cost per million objects (us-east-1, same cloud) | + data out (other cloud) |".into());
    line("|---|---|---|---|---|---|".into());
    let prices = Prices::aws();
    for c in &MIX {
        let n = c.share * i.objects;
        let mut one = Requests::default();
        one.copy(&model(), c.size, false);
        let mut million = Requests::default();
        for _ in 0..1000 {
            million.copy(&model(), c.size, false);
        }
        let scale = |r: &Requests, k: f64| Requests {
            get: (r.get as f64 * k) as u64,
            head: (r.head as f64 * k) as u64,
            put: (r.put as f64 * k) as u64,
            jobs: (r.jobs as f64 * k) as u64,
            ledger_writes: (r.ledger_writes as f64 * k) as u64,
            bytes_read: (r.bytes_read as f64 * k) as u64,
            ..Default::default()
        };
        let million = scale(&million, 1000.0);
        let (req, egress, fleet) = prices.cost(&million, true, true);
        line(format!(
            "| {} | {:.0} | {}, {} | {} | ${:.2} | ${:.2} |",
            c.name,
            n,
            one.get + one.head,
            one.put,
            one.ledger_writes,
            req + fleet,
            egress
        ));
        let add = scale(&one, n);
        total.get += add.get;
        total.head += add.head;
        total.put += add.put;
        total.jobs += add.jobs;
        total.ledger_writes += add.ledger_writes;
        total.bytes_read += add.bytes_read;
        let per_slot = i.object_secs.max(c.size as f64 / (i.worker_bytes_per_sec / i.slots));
        worker_secs += n * per_slot / i.slots;
    }
    line(String::new());

    line("## The fleet for the target".into());
    line(String::new());
    let workers = (worker_secs / i.target_secs).ceil();
    let jobs_per_sec = i.objects / i.target_secs;
    line(format!(
        "* Target: {}. Worker-process time: {} in all, so **{workers:.0} worker processes** ({:.0} slots each, {:.0} ms per small object, {:.0} MiB/s each on large ones).",
        human_secs(i.target_secs),
        human_secs(worker_secs),
        i.slots,
        i.object_secs * 1000.0,
        i.worker_bytes_per_sec / 1_048_576.0
    ));
    line(format!(
        "* Queue: {:.0} messages, {jobs_per_sec:.0}/s on average; {:.0} SQS requests (send, receive and delete in batches of 10). SQS standard queues have no practical throughput limit, but one process queueing {:.0} messages/s (input) needs {} for them all: queueing must be shared by the listers, as list jobs are.",
        total.jobs as f64,
        3.0 * (total.jobs as f64 / 10.0).ceil(),
        i.queue_per_sec,
        human_secs(total.jobs as f64 / i.queue_per_sec)
    ));
    line(format!(
        "* DynamoDB: {:.0} writes, {:.0} WCU on average over the target (items under 1 KB); on-demand adapts, provisioned needs headroom above it.",
        total.ledger_writes as f64,
        total.ledger_writes as f64 / i.target_secs
    ));
    let (req, egress, fleet) = prices.cost(&total, true, true);
    line(format!(
        "* Cost at us-east-1 list prices: ${req:.0} in S3 requests, ${fleet:.0} in SQS and DynamoDB, ${egress:.0} data out when the source is in another cloud."
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_billion_objects_take_a_day_with_one_lister_and_minutes_with_the_fleet() {
        let text = report(&Inputs::default());
        assert!(text.contains("| 1 | 1 | 16.7 h |"), "{text}");
        assert!(text.contains("| 64 | 8 | 117 s | 3 min |"), "{text}");
        assert!(text.contains("0.99 PB"), "{text}");
        assert!(text.contains("| large (256 MiB) | 2500000 | 19, 18 | 19 |"), "{text}");
    }
}

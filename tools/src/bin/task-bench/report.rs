//! What a run measured, printed for people or as one JSON object for scripts.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles, in microseconds.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50_us: u64,
    pub(crate) p90_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) max_us: u64,
    pub(crate) mean_us: f64,
}

impl Latency {
    pub(crate) fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p99_us: histogram.value_at_quantile(0.99),
            max_us: histogram.max(),
            mean_us: histogram.mean(),
        }
    }
}

/// The end-to-end figures.
#[derive(Debug, Default, Serialize)]
pub(crate) struct EndToEnd {
    pub(crate) created: u64,
    pub(crate) completed: u64,
    pub(crate) failed: u64,
    pub(crate) lost: u64,
    pub(crate) tasks_per_sec: f64,
}

/// One run.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Report {
    pub(crate) label: String,
    pub(crate) scenario: String,
    pub(crate) clients: usize,
    pub(crate) connections: usize,
    pub(crate) target_rate: Option<f64>,
    pub(crate) seconds: f64,
    pub(crate) requests: u64,
    pub(crate) requests_per_sec: f64,
    pub(crate) latency: Latency,
    pub(crate) codes: BTreeMap<String, u64>,
    pub(crate) server_rss_peak_bytes: Option<u64>,
    pub(crate) e2e: Option<EndToEnd>,
}

impl Report {
    pub(crate) fn print(&self, json: bool) {
        if json {
            println!(
                "{}",
                serde_json::to_string(self).expect("a report serializes")
            );
            return;
        }
        println!(
            "{} {}: {} clients over {} connections, {:.1} s{}",
            self.label,
            self.scenario,
            self.clients,
            self.connections,
            self.seconds,
            self.target_rate
                .map(|r| format!(", paced at {r:.0}/s"))
                .unwrap_or_default()
        );
        println!(
            "  requests      {} ({:.0}/s)",
            self.requests, self.requests_per_sec
        );
        let l = &self.latency;
        println!(
            "  latency       p50 {} us, p90 {} us, p99 {} us, max {} us (mean {:.0} us)",
            l.p50_us, l.p90_us, l.p99_us, l.max_us, l.mean_us
        );
        let codes: Vec<String> = self.codes.iter().map(|(c, n)| format!("{c} {n}")).collect();
        println!("  codes         {}", codes.join(", "));
        if let Some(rss) = self.server_rss_peak_bytes {
            println!("  server RSS    peak {:.1} MiB", rss as f64 / 1_048_576.0);
        }
        if let Some(e) = &self.e2e {
            println!(
                "  end to end    {} created, {} COMPLETED, {} FAILED, {} lost; {:.0} tasks/s",
                e.created, e.completed, e.failed, e.lost, e.tasks_per_sec
            );
        }
    }
}

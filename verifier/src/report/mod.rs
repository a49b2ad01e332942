//! The verdict report: built once from a judgement, then rendered as text
//! for a terminal, JSON for machines (the contract of the design, section
//! 6), a self-contained HTML page with plots, and HdrHistogram interval
//! logs; and the live view of `watch` ([`live`]).

mod hdrlog;
mod html;
pub mod live;
pub mod tables;
mod text;

use serde::Serialize;
use serde_json::Value;

pub use self::hdrlog::write_hdr_log;
use crate::{
    dataplane::DataplaneStats,
    flows::Collected,
    intent::Limits,
    measure::{
        budget::BudgetReport,
        judge::Judgement,
        migration::Figures,
        reasons::{self, Reason},
    },
    verdict::Verdict,
};

pub const SCHEMA_VERSION: u32 = 1;

fn rfc3339<S: serde::Serializer>(
    at: &Option<std::time::SystemTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serializer.serialize_str(&live::rfc3339(*at)),
        None => serializer.serialize_none(),
    }
}

/// How a command prints its result (`-o`): text for people (each
/// command's own), JSON or YAML for machines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
    Yaml,
}

impl Format {
    /// `value`, pretty JSON or a YAML document (JSON for text).
    pub fn render(self, value: &impl Serialize) -> String {
        match self {
            Format::Text | Format::Json => serde_json::to_string_pretty(value).expect("serializes"),
            Format::Yaml => serde_yaml_ng::to_string(value).expect("serializes"),
        }
    }

    /// `value` as one record of a stream: a JSON line, or a YAML document
    /// after its `---`.
    pub fn record(self, value: &impl Serialize) -> String {
        match self {
            Format::Text | Format::Json => serde_json::to_string(value).expect("serializes"),
            Format::Yaml => format!("---\n{}", self.render(value).trim_end()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("writing {}: {source}", path.display())]
pub struct WriteError {
    path: std::path::PathBuf,
    source: std::io::Error,
}

/// Which node a namespace is on, and whether it is virt-handler's pod's:
/// with the direction the source's packets crossed each interface, the
/// order of the path the HTML report draws.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    /// As attachments name it (`None`: migverify's own namespace).
    pub netns: Option<String>,
    pub node: String,
    pub pod: bool,
}

#[derive(Debug, Serialize)]
pub struct MigrationReport {
    #[serde(flatten)]
    pub figures: Figures,
    pub budget: BudgetReport,
}

/// What the data plane itself lost or skipped: never silent.
#[derive(Debug, Default, Serialize)]
pub struct DataplaneHealth {
    #[serde(flatten)]
    pub stats: DataplaneStats,
    pub events_dropped: u64,
    pub connections: usize,
    pub observed_s: f64,
}

impl DataplaneHealth {
    pub fn of(collected: &Collected) -> DataplaneHealth {
        DataplaneHealth {
            stats: collected.stats,
            events_dropped: collected.events_dropped,
            connections: collected.table.len(),
            observed_s: collected.duration.as_secs_f64(),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub verdict: Verdict,
    pub reasons: Vec<Reason>,
    pub migrations: Vec<MigrationReport>,
    /// Values migverify assumed because no input gave them.
    pub assumptions: Vec<String>,
    pub budget_settings: Limits,
    pub dataplane: DataplaneHealth,
    /// When the observation started (RFC 3339, UTC); the zero of every
    /// `at_ms` and of the HdrHistogram log's timestamps.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "rfc3339")]
    pub started_at: Option<std::time::SystemTime>,
    /// Where the observed namespaces are, when known.
    #[serde(skip)]
    pub places: Vec<Place>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lab: Option<Value>,
    /// `bench run`'s own figures and answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bench: Option<Value>,
}

impl Report {
    /// The report of a final judgement, with the assumptions made while
    /// reading the inputs before the judgement's own.
    pub fn new(
        judgement: Judgement,
        limits: &Limits,
        dataplane: DataplaneHealth,
        mut assumptions: Vec<String>,
    ) -> Report {
        assumptions.extend(judgement.assumptions);
        Report {
            schema_version: SCHEMA_VERSION,
            verdict: reasons::verdict(&judgement.reasons),
            reasons: judgement.reasons,
            migrations: judgement
                .migrations
                .into_iter()
                .map(|m| MigrationReport {
                    figures: m.figures,
                    budget: m.budget,
                })
                .collect(),
            assumptions,
            budget_settings: limits.clone(),
            dataplane,
            started_at: None,
            places: Vec::new(),
            lab: None,
            bench: None,
        }
    }
}

impl Report {
    /// Adds a reason after the fact (the lab's own findings) and re-judges.
    pub fn add_reason(&mut self, reason: Reason) {
        self.reasons.push(reason);
        reasons::sort(&mut self.reasons);
        self.verdict = reasons::verdict(&self.reasons);
    }

    /// Writes the HTML report and the HdrHistogram log where given; says
    /// what it wrote.
    pub fn write_files(
        &self,
        html: Option<&std::path::Path>,
        hdr_log: Option<&std::path::Path>,
    ) -> Result<Vec<String>, WriteError> {
        let mut written = Vec::new();
        if let Some(path) = html {
            std::fs::write(path, self.html()).map_err(|source| WriteError {
                path: path.into(),
                source,
            })?;
            written.push(format!("HTML report written to {}", path.display()));
        }
        if let Some(path) = hdr_log {
            std::fs::File::create(path)
                .and_then(|mut file| write_hdr_log(self, &mut file))
                .map_err(|source| WriteError {
                    path: path.into(),
                    source,
                })?;
            written.push(format!("HdrHistogram log written to {}", path.display()));
        }
        Ok(written)
    }

    pub fn json(&self) -> String {
        Format::Json.render(self)
    }

    pub fn text(&self) -> String {
        text::render(self)
    }

    pub fn html(&self) -> String {
        html::render(self)
    }
}

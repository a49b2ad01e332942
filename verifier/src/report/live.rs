//! The live view: a full screen redrawn in place on a terminal (plain ANSI
//! escapes), or timestamped lines for logs (`kubectl logs`), or JSON lines or YAML
//! documents.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    fmt::Write as _,
    io::Write as _,
    time::{Duration, SystemTime},
};

use serde_json::json;

use super::Format;
use crate::{
    measure::{
        live::{ConnectionRow, MigrationRow, Snapshot},
        reasons::Reason,
    },
    units::{bytes, rate},
    verdict::Severity,
};

/// Migrations in these states are shown every refresh in line mode; the
/// others once, when they get there.
const ACTIVE: [&str; 4] = ["connecting", "moving", "stalled", "expected"];
/// Line mode says it is alive this often while nothing migrates.
const IDLE_NOTICE: Duration = Duration::from_secs(10);

/// `2025-01-31T12:34:56.789Z`: RFC 3339 in UTC with milliseconds.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    let (year, month, day) = civil_date(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01: counted in
/// 400-year eras of 146 097 days, years starting on March 1st so the leap
/// day falls at a year's end.
fn civil_date(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468; // 0000-03-01 to 1970-01-01
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn rtt(us: Option<u64>) -> String {
    match us {
        None => "-".into(),
        Some(us) if us >= 1000 => format!("{:.1}ms", us as f64 / 1000.0),
        Some(us) => format!("{us}us"),
    }
}

fn compact_rate(bps: u64) -> String {
    rate(bps).replace(' ', "")
}

fn compact_bytes(n: u64) -> String {
    bytes(n).replace(' ', "")
}

fn roles(roles: &[crate::dataplane::Role]) -> String {
    if roles.is_empty() {
        return "-".into();
    }
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join("+")
}

fn severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Error => "error",
    }
}

fn migration_line(m: &MigrationRow) -> String {
    format!(
        "migration {} state={} rate={} avg={} payload={} rtt_p50={} rtt_p99={} retrans={} zero_win={} \
         stall={:.1}s/{}s roles={} conns={} targets={}",
        m.id,
        m.state,
        compact_rate(m.rate_now_bps),
        compact_rate(m.rate_mean_bps),
        compact_bytes(m.payload_bytes),
        rtt(m.rtt_p50_us),
        rtt(m.rtt_p99_us),
        m.retransmits,
        m.zero_windows,
        m.stall_s,
        m.progress_timeout_s,
        roles(&m.roles),
        m.connections.len(),
        m.targets.join(",")
    )
}

fn flow_line(c: &ConnectionRow, progress_timeout_s: u64) -> String {
    format!(
        "  flow {}->{} {} {} rate={} payload={} rtt_p50={} rtt_p99={} retrans={} zero_win={} idle={:.1}s/{}s \
         role={} via={}",
        c.src,
        c.dst,
        c.channel,
        c.state,
        compact_rate(c.rate_now_bps),
        compact_bytes(c.payload_bytes),
        rtt(c.rtt_p50_us),
        rtt(c.rtt_p99_us),
        c.retransmits,
        c.zero_windows,
        c.idle_s,
        progress_timeout_s,
        roles(&c.roles),
        c.interfaces.join(",")
    )
}

fn cause_key(cause: &Reason) -> (String, &'static str) {
    (cause.migration.clone().unwrap_or_default(), cause.id())
}

/// Timestamped lines, or JSON lines, or YAML documents.
pub struct Lines {
    structured: Option<Format>,
    /// Causes that held at the last refresh.
    active: BTreeSet<(String, &'static str)>,
    /// Each migration's state at the last refresh.
    states: HashMap<String, &'static str>,
    quiet_since: Option<SystemTime>,
}

impl Lines {
    pub fn text() -> Self {
        Self::new(None)
    }

    pub fn structured(format: Format) -> Self {
        Self::new(Some(format))
    }

    fn new(structured: Option<Format>) -> Self {
        Lines {
            structured,
            active: BTreeSet::new(),
            states: HashMap::new(),
            quiet_since: None,
        }
    }

    fn emit(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    pub fn note(&mut self, text: &str, now: SystemTime) {
        let time = rfc3339(now);
        if let Some(format) = self.structured {
            self.emit(&format.record(&json!({ "kind": "note", "time": time, "message": text })));
        } else {
            self.emit(&format!("{time} note {text}"));
        }
    }

    pub fn show(&mut self, snapshot: &Snapshot, now: SystemTime) {
        let time = rfc3339(now);
        // Causes first: they are what someone tails the log for.
        let holding: BTreeMap<(String, &'static str), &Reason> =
            snapshot.all_causes().map(|c| (cause_key(c), c)).collect();
        for (key, cause) in &holding {
            if self.active.contains(key) {
                continue;
            }
            if let Some(format) = self.structured {
                self.emit(&format.record(
                    &json!({ "kind": "cause", "time": time, "at_s": snapshot.at_ms as f64 / 1000.0,
                             "cause": cause }),
                ));
            } else {
                self.emit(&format!(
                    "{time} cause {} {} {}: {}",
                    severity(cause.severity),
                    cause.id(),
                    cause.migration.as_deref().unwrap_or("-"),
                    cause.message
                ));
            }
        }
        for key in self.active.difference(&holding.keys().cloned().collect()) {
            if let Some(format) = self.structured {
                self.emit(&format.record(
                    &json!({ "kind": "cleared", "time": time, "id": key.1, "migration": key.0 }),
                ));
            } else {
                self.emit(&format!("{time} cleared {} {}", key.1, key.0));
            }
        }
        self.active = holding.keys().cloned().collect();

        if let Some(format) = self.structured {
            self.emit(&format.record(&json!({
                "kind": "snapshot",
                "time": time,
                "at_s": snapshot.at_ms as f64 / 1000.0,
                "verdict": snapshot.verdict,
                "migrations": snapshot.migrations,
                "causes": snapshot.causes,
            })));
            return;
        }
        if snapshot.migrations.is_empty() {
            let due = self
                .quiet_since
                .is_none_or(|since| now.duration_since(since).unwrap_or_default() >= IDLE_NOTICE);
            if due {
                self.quiet_since = Some(now);
                self.emit(&format!("{time} waiting: no migration seen yet"));
            }
            return;
        }
        self.quiet_since = None;
        for m in &snapshot.migrations {
            let changed = self.states.insert(m.id.clone(), m.state) != Some(m.state);
            if !ACTIVE.contains(&m.state) && !changed {
                continue;
            }
            self.emit(&format!("{time} {}", migration_line(m)));
            for c in &m.connections {
                self.emit(&format!("{time} {}", flow_line(c, m.progress_timeout_s)));
            }
        }
    }
}

/// The full-screen view: the alternate screen, redrawn in place.
pub struct Screen {
    notes: VecDeque<String>,
    left: bool,
}

impl Screen {
    pub fn enter() -> Self {
        // Alternate screen, cursor hidden: the shell's screen comes back on exit.
        print!("\x1b[?1049h\x1b[?25l");
        let _ = std::io::stdout().flush();
        Screen {
            notes: VecDeque::new(),
            left: false,
        }
    }

    pub fn leave(mut self) {
        self.restore();
    }

    fn restore(&mut self) {
        if !self.left {
            self.left = true;
            print!("\x1b[?25h\x1b[?1049l");
            let _ = std::io::stdout().flush();
        }
    }

    pub fn note(&mut self, text: &str) {
        self.notes
            .push_back(format!("{} {text}", &rfc3339(SystemTime::now())[11..19]));
        while self.notes.len() > 3 {
            self.notes.pop_front();
        }
    }

    pub fn draw(&mut self, snapshot: &Snapshot, now: SystemTime) {
        let (columns, rows) = terminal_size();
        let lines = frame(snapshot, now, &self.notes);
        let mut out = String::from("\x1b[H");
        for line in lines.iter().take(rows.saturating_sub(1)) {
            let visible: String = line.chars().take(columns).collect();
            let _ = write!(out, "{visible}\x1b[K\r\n");
        }
        out.push_str("\x1b[J");
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.restore();
    }
}

/// The screen's lines, top to bottom.
fn frame(snapshot: &Snapshot, now: SystemTime, notes: &VecDeque<String>) -> Vec<String> {
    let mut lines = vec![
        format!(
            "migverify watch   {} UTC   observed {:.0} s   verdict now {}   Ctrl-C: stop and judge",
            &rfc3339(now)[..19].replace('T', " "),
            snapshot.at_ms as f64 / 1000.0,
            snapshot.verdict.as_str()
        ),
        String::new(),
    ];
    if snapshot.migrations.is_empty() {
        lines.push("no migration seen yet".into());
    }
    for m in &snapshot.migrations {
        lines.push(format!(
            "MIGRATION {}  -> {}   {}{}",
            m.id,
            m.targets.join(", "),
            m.state.to_uppercase(),
            if m.state == "stalled" {
                format!(
                    " {:.1} s of progressTimeout {} s",
                    m.stall_s, m.progress_timeout_s
                )
            } else {
                String::new()
            }
        ));
        lines.push(format!(
            "  rate {} now, {} avg   payload {}   rtt p50 {} p99 {}   retrans {}   zero-win {}   no progress {:.1}/{} s   roles {}",
            rate(m.rate_now_bps),
            rate(m.rate_mean_bps),
            bytes(m.payload_bytes),
            rtt(m.rtt_p50_us),
            rtt(m.rtt_p99_us),
            m.retransmits,
            m.zero_windows,
            m.stall_s,
            m.progress_timeout_s,
            roles(&m.roles)
        ));
        for cause in &m.causes {
            lines.push(format!(
                "  {:<7} {:<27} {}",
                severity(cause.severity).to_uppercase(),
                cause.id(),
                cause.message
            ));
        }
        if !m.connections.is_empty() {
            lines.push(format!(
                "  {:<45} {:<7} {:<11} {:>13} {:>11} {:>17} {:>6} {:>6} {:>8}  ROLE / INTERFACES",
                "FLOW",
                "CHANNEL",
                "STATE",
                "RATE NOW",
                "PAYLOAD",
                "RTT p50/p99",
                "RETR",
                "ZWIN",
                "IDLE"
            ));
        }
        for c in &m.connections {
            lines.push(format!(
                "  {:<45} {:<7} {:<11} {:>13} {:>11} {:>17} {:>6} {:>6} {:>7.1}s  {} {}",
                format!("{} -> {}", c.src, c.dst),
                c.channel,
                c.state,
                rate(c.rate_now_bps),
                bytes(c.payload_bytes),
                format!("{}/{}", rtt(c.rtt_p50_us), rtt(c.rtt_p99_us)),
                c.retransmits,
                c.zero_windows,
                c.idle_s,
                roles(&c.roles),
                c.interfaces.join(",")
            ));
        }
        lines.push(String::new());
    }
    for cause in &snapshot.causes {
        lines.push(format!(
            "{:<7} {:<27} {}: {}",
            severity(cause.severity).to_uppercase(),
            cause.id(),
            cause.migration.as_deref().unwrap_or("-"),
            cause.message
        ));
    }
    lines.extend(notes.iter().cloned());
    lines
}

/// Columns and rows of the terminal on stdout (80 x 24 when unknown).
fn terminal_size() -> (usize, usize) {
    // SAFETY: all-zero is a valid winsize; TIOCGWINSZ fills it or fails.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: plain ioctl on stdout with a valid pointer.
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 && size.ws_row > 0 {
        (usize::from(size.ws_col), usize::from(size.ws_row))
    } else {
        (80, 24)
    }
}

/// Where the live view goes: the full screen on a terminal, timestamped
/// lines otherwise, or JSON lines.
pub enum View {
    Screen(Screen),
    Lines(Lines),
}

impl View {
    /// The full screen when standard output is a terminal (unless `plain`),
    /// text lines otherwise.
    pub fn for_stdout(plain: bool) -> View {
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) && !plain {
            View::Screen(Screen::enter())
        } else {
            View::Lines(Lines::text())
        }
    }

    /// JSON lines or YAML documents.
    pub fn structured(format: Format) -> View {
        View::Lines(Lines::structured(format))
    }

    pub fn show(&mut self, snapshot: &Snapshot, now: SystemTime) {
        match self {
            View::Screen(screen) => screen.draw(snapshot, now),
            View::Lines(lines) => lines.show(snapshot, now),
        }
    }

    /// Something worth saying once (a VMI loaded, an error reading one).
    pub fn note(&mut self, text: &str) {
        match self {
            View::Screen(screen) => screen.note(text),
            View::Lines(lines) => lines.note(text, SystemTime::now()),
        }
    }

    /// Gives the terminal back.
    pub fn leave(self) {
        if let View::Screen(screen) = self {
            screen.leave();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = |secs: u64, millis: u64| {
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(secs * 1000 + millis))
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        // A leap day, and the day after it.
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(951_868_799, 999), "2000-02-29T23:59:59.999Z");
        assert_eq!(at(1_735_689_600, 0), "2025-01-01T00:00:00.000Z");
        assert_eq!(at(4_107_542_399, 0), "2100-02-28T23:59:59.000Z");
    }
}

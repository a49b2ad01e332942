//! Figures for people: sizes in binary units, rates in bits per second
//! (as links are sold), one spelling everywhere.

/// A rate in bits per second: `1.25 Gbit/s`, `200.0 Mbit/s`, `12.0 kbit/s`.
pub fn rate(bps: u64) -> String {
    match bps {
        b if b >= 1_000_000_000 => format!("{:.2} Gbit/s", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} Mbit/s", b as f64 / 1e6),
        b => format!("{:.1} kbit/s", b as f64 / 1e3),
    }
}

/// A rate in bits per second as KubeVirt's settings spell rates too
/// (`bandwidthPerMigration` is bytes per second): `9.5 MiB/s (80 Mbit/s)`.
pub fn rate_and_bytes(bps: u64) -> String {
    format!(
        "{:.1} MiB/s ({:.0} Mbit/s)",
        bps as f64 / 8.0 / f64::from(1u32 << 20),
        bps as f64 / 1e6
    )
}

/// A size: `1.50 GiB`, `256.0 MiB`, `512 B`.
pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n => format!("{n} B"),
    }
}

/// A time given in microseconds: `0.42 ms`, `12.3 ms`, `1.25 s`.
pub fn micros(us: u64) -> String {
    match us {
        u if u >= 1_000_000 => format!("{:.2} s", u as f64 / 1e6),
        u if u >= 10_000 => format!("{:.1} ms", u as f64 / 1e3),
        u => format!("{:.2} ms", u as f64 / 1e3),
    }
}

/// A duration given in seconds: `0.93 s`, `12.4 s`, `2 min 5 s`, `1 h 2 min`.
pub fn seconds(s: f64) -> String {
    let whole = s.round() as u64;
    match s {
        s if s < 10.0 => format!("{s:.2} s"),
        s if s < 120.0 => format!("{s:.1} s"),
        _ if whole < 3600 => format!("{} min {} s", whole / 60, whole % 60),
        _ => format!("{} h {} min", whole / 3600, whole % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        assert_eq!(rate(1_250_000_000), "1.25 Gbit/s");
        assert_eq!(rate(200_000_000), "200.0 Mbit/s");
        assert_eq!(rate(12_000), "12.0 kbit/s");
        // 1 MiB/s is 8.39 Mbit/s.
        assert_eq!(rate_and_bytes(8 << 20), "1.0 MiB/s (8 Mbit/s)");
        assert_eq!(bytes(3 << 29), "1.50 GiB");
        assert_eq!(bytes(256 << 20), "256.0 MiB");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(micros(420), "0.42 ms");
        assert_eq!(micros(12_345), "12.3 ms");
        assert_eq!(micros(1_250_000), "1.25 s");
        assert_eq!(seconds(0.928), "0.93 s");
        assert_eq!(seconds(12.44), "12.4 s");
        assert_eq!(seconds(125.0), "2 min 5 s");
        assert_eq!(seconds(3720.0), "1 h 2 min");
    }
}

//! The Prometheus text exposition format (version 0.0.4), written by hand.
//!
//! Hand-written rather than a metrics crate: the service exposes a few dozen series, most read
//! from the database at scrape time, and the format is a page of rules (HELP/TYPE lines,
//! label escaping, cumulative `le` buckets). `promtool check metrics` in `scripts/test` holds
//! this file to them.

use std::fmt::{Display, Write};

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One scrape's text, family by family: [`Exposition::family`] writes HELP and TYPE, then the
/// family's samples follow.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let help = help.replace('\\', r"\\").replace('\n', r"\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    /// A histogram's series: `counts[i]` observations fell in bucket `i` alone (not
    /// cumulative), with `counts.len() == bounds.len() + 1`, the last being above every bound.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) {
        debug_assert_eq!(counts.len(), bounds.len() + 1);
        let mut cumulative = 0u64;
        for (i, count) in counts.iter().enumerate() {
            cumulative += count;
            let le = bounds
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = write!(self.out, "{name}_bucket");
            self.labels(labels, Some(&le));
            let _ = writeln!(self.out, " {cumulative}");
        }
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {sum}");
        let _ = write!(self.out, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {cumulative}");
    }

    pub fn finish(self) -> String {
        self.out
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
        for (i, (key, value)) in all.enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{key}=\"");
            for c in value.chars() {
                match c {
                    '\\' => self.out.push_str(r"\\"),
                    '"' => self.out.push_str("\\\""),
                    '\n' => self.out.push_str(r"\n"),
                    c => self.out.push(c),
                }
            }
            self.out.push('"');
        }
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::default();
        e.family("x", Kind::Gauge, "a \\ help\nline");
        e.sample("x", &[("route", "/a/{b}"), ("q", "say \"hi\"\\\n")], 1);
        assert_eq!(
            e.finish(),
            "# HELP x a \\\\ help\\nline\n# TYPE x gauge\nx{route=\"/a/{b}\",q=\"say \\\"hi\\\"\\\\\\n\"} 1\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf() {
        let mut e = Exposition::default();
        e.histogram("h", &[("route", "/r")], &[0.5, 1.0], &[2, 0, 3], 7.25);
        assert_eq!(
            e.finish(),
            "h_bucket{route=\"/r\",le=\"0.5\"} 2\nh_bucket{route=\"/r\",le=\"1\"} 2\n\
             h_bucket{route=\"/r\",le=\"+Inf\"} 5\nh_sum{route=\"/r\"} 7.25\nh_count{route=\"/r\"} 5\n"
        );
    }
}

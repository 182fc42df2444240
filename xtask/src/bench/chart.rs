//! A plain SVG bar chart of a scenario's headline numbers, for a README reader to look at.
//!
//! Groups of horizontal bars (one group per task, one bar per subject), each group scaled to
//! its own largest value, since a launch (ms) and a `find` (hundreds of ms) share a chart.
//! A subject keeps its colour across groups. No dependency: the SVG is a few dozen elements.

use std::fmt::Write as _;

pub struct Chart {
    pub title: String,
    pub unit: String,
    pub groups: Vec<Group>,
}

pub struct Group {
    pub label: String,
    /// Subject and value; a subject that could not run the task has no bar.
    pub bars: Vec<(String, f64)>,
}

const WIDTH: f64 = 820.0;
const LABEL: f64 = 250.0;
const VALUE: f64 = 120.0;
const ROW: f64 = 20.0;
const COLOURS: &[&str] = &[
    "#8a8f98", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#d62728",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A value with as many decimals as its size needs.
pub fn number(value: f64) -> String {
    match value.abs() {
        v if v >= 100.0 => format!("{value:.0}"),
        v if v >= 10.0 => format!("{value:.1}"),
        v if v >= 1.0 => format!("{value:.2}"),
        _ => format!("{value:.3}"),
    }
}

impl Chart {
    pub fn svg(&self) -> String {
        let mut subjects: Vec<&str> = Vec::new();
        for group in &self.groups {
            for (subject, _) in &group.bars {
                if !subjects.contains(&subject.as_str()) {
                    subjects.push(subject);
                }
            }
        }
        let rows: usize = self.groups.iter().map(|g| g.bars.len() + 1).sum();
        let height = 40.0 + rows as f64 * ROW + 10.0;
        let span = WIDTH - LABEL - VALUE;
        let mut svg = String::new();
        let _ = writeln!(
            svg,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            svg,
            r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="22" font-size="15" font-weight="bold">{} ({})</text>"#,
            escape(&self.title),
            escape(&self.unit)
        );
        let mut y = 40.0;
        for group in &self.groups {
            let _ = writeln!(
                svg,
                r#"<text x="10" y="{:.0}" font-weight="bold">{}</text>"#,
                y + 14.0,
                escape(&group.label)
            );
            y += ROW;
            let max = group.bars.iter().map(|(_, v)| *v).fold(0.0, f64::max);
            for (subject, value) in &group.bars {
                let colour = subjects
                    .iter()
                    .position(|s| s == subject)
                    .map_or(COLOURS[0], |i| COLOURS[i % COLOURS.len()]);
                let length = if max > 0.0 {
                    (value / max * span).max(1.0)
                } else {
                    1.0
                };
                let _ = writeln!(
                    svg,
                    r#"<text x="24" y="{:.0}">{}</text><rect x="{LABEL}" y="{:.0}" width="{length:.1}" height="{:.0}" fill="{colour}"/><text x="{:.1}" y="{:.0}">{} {}</text>"#,
                    y + 14.0,
                    escape(subject),
                    y + 3.0,
                    ROW - 6.0,
                    LABEL + length + 6.0,
                    y + 14.0,
                    number(*value),
                    escape(&self.unit)
                );
                y += ROW;
            }
        }
        svg.push_str("</svg>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_their_group_and_text_is_escaped() {
        let chart = Chart {
            title: "a <b> & c".into(),
            unit: "ms".into(),
            groups: vec![Group {
                label: "launch".into(),
                bars: vec![("bare".into(), 1.0), ("cordon".into(), 2.0)],
            }],
        };
        let svg = chart.svg();
        assert!(svg.contains("a &lt;b&gt; &amp; c"));
        // The largest bar spans the whole width left for bars; the other is half of it.
        let span = WIDTH - LABEL - VALUE;
        assert!(svg.contains(&format!(r#"width="{span:.1}""#)), "{svg}");
        assert!(
            svg.contains(&format!(r#"width="{:.1}""#, span / 2.0)),
            "{svg}"
        );
        assert!(svg.contains("2.00 ms"));
    }
}

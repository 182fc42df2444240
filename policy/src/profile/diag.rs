//! Where a value came from, and errors that point at it as `FILE:LINE:COL: message`.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The text of one profile file, kept so errors can be located after parsing.
#[derive(Debug)]
pub struct Source {
    /// How the file is named in messages: its path, or `<builtin>/NAME.toml`.
    pub path: PathBuf,
    pub text: String,
}

/// A span inside a [`Source`].
#[derive(Debug, Clone)]
pub struct Loc {
    source: Arc<Source>,
    span: Range<usize>,
}

impl Loc {
    pub fn new(source: Arc<Source>, span: Range<usize>) -> Self {
        Self { source, span }
    }

    pub fn path(&self) -> &Path {
        &self.source.path
    }

    /// 1-based line and column (in characters) of the start of the span.
    pub fn line_col(&self) -> (usize, usize) {
        let start = self.span.start.min(self.source.text.len());
        let before = &self.source.text[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }

    /// A warning at this place: printed like an error, with `warning: ` before the message.
    pub fn warning(&self, message: impl std::fmt::Display) -> Diagnostic {
        self.error(format!("warning: {message}"))
    }

    /// An error at this place.
    pub fn error(&self, message: impl Into<String>) -> Diagnostic {
        let (line, column) = self.line_col();
        Diagnostic {
            file: self.source.path.clone(),
            line,
            column,
            message: message.into(),
        }
    }
}

impl fmt::Display for Loc {
    /// `FILE:LINE:COL`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (line, column) = self.line_col();
        write!(f, "{}:{line}:{column}", self.source.path.display())
    }
}

/// A value and the place in a profile file it was written.
#[derive(Debug, Clone)]
pub struct Located<T> {
    pub value: T,
    pub loc: Loc,
}

/// An error in a profile file, printed the way compilers do so editors can jump to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )
    }
}

impl std::error::Error for Diagnostic {}

/// Every error found in a profile (never empty), one `FILE:LINE:COL: message` per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// The errors in the order a reader meets them: by file, then line and column, each once.
    pub fn sorted(mut errors: Vec<Diagnostic>) -> Self {
        let mut files: Vec<PathBuf> = Vec::new();
        for e in &errors {
            if !files.contains(&e.file) {
                files.push(e.file.clone());
            }
        }
        errors.sort_by_key(|e| {
            let file = files.iter().position(|f| *f == e.file);
            (file, e.line, e.column, e.message.clone())
        });
        errors.dedup();
        Self(errors)
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Self(vec![d])
    }
}

/// The closest candidate to `word`, if one is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Adds "did you mean" to serde's "unknown field/variant `x`, expected one of `a`, `b`" messages.
pub fn with_suggestion(message: &str) -> String {
    let message = message.trim_end();
    let unknown = ["unknown field `", "unknown variant `"]
        .iter()
        .find_map(|prefix| message.split_once(prefix).map(|(_, rest)| rest));
    let Some(rest) = unknown else {
        return message.to_string();
    };
    let Some((word, expected)) = rest.split_once('`') else {
        return message.to_string();
    };
    let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    match closest(word, candidates) {
        Some(meant) => format!("{message}; did you mean `{meant}`?"),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> Arc<Source> {
        Arc::new(Source {
            path: PathBuf::from("p.toml"),
            text: text.to_string(),
        })
    }

    #[test]
    fn line_and_column_are_one_based() {
        let src = source("a = 1\nbb = \"x\"\n");
        let at = src.text.find('"').unwrap_or(0);
        let loc = Loc::new(src, at..at + 3);
        assert_eq!(loc.line_col(), (2, 6));
        assert_eq!(loc.error("bad").to_string(), "p.toml:2:6: bad");
    }

    #[test]
    fn suggests_the_field_that_was_meant() {
        let msg = "unknown field `raed`, expected one of `read`, `write`, `exec`, `deny`";
        assert_eq!(with_suggestion(msg), format!("{msg}; did you mean `read`?"));
        let far = "unknown field `zzzzzz`, expected one of `read`, `write`";
        assert_eq!(with_suggestion(far), far);
    }

    #[test]
    fn closest_ignores_distant_words() {
        assert_eq!(closest("ptrce", ["ptrace", "mount"]), Some("ptrace"));
        assert_eq!(closest("xyz", ["ptrace", "mount"]), None);
    }
}

//! Problems found in a project, each tied to a file, a line and column, a field, and a fix.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::yaml::Pos;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem, ready to show a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The file, relative to the project root where possible.
    pub file: PathBuf,
    /// Where in the file; `None` for a problem with the file as a whole.
    pub pos: Option<Pos>,
    /// The field, as a dotted path (`destinations.crm.token`), when the problem is about one.
    pub field: Option<String>,
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
    /// The source line at `pos`, for showing it with a caret.
    pub source_line: Option<String>,
}

impl Diagnostic {
    pub fn error(file: impl Into<PathBuf>, pos: Option<Pos>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.into(),
            pos,
            field: None,
            message: message.into(),
            help: None,
            source_line: None,
        }
    }

    pub fn warning(file: impl Into<PathBuf>, pos: Option<Pos>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, pos, message)
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        let field = field.into();
        self.field = (!field.is_empty()).then_some(field);
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Fills `source_line` from the file's text.
    pub fn with_source(mut self, text: &str) -> Self {
        if let Some(pos) = self.pos {
            self.source_line = text
                .lines()
                .nth(pos.line.saturating_sub(1) as usize)
                .map(str::to_string);
        }
        self
    }

    /// `models/a.yml:3:5` style location.
    pub fn location(&self) -> String {
        match self.pos {
            Some(pos) => format!("{}:{}:{}", self.file.display(), pos.line, pos.column),
            None => self.file.display().to_string(),
        }
    }

    /// Makes `file` relative to `root` when it lies inside it.
    pub fn relative_to(mut self, root: &Path) -> Self {
        if let Ok(rel) = self.file.strip_prefix(root) {
            self.file = rel.to_path_buf();
        }
        self
    }
}

impl fmt::Display for Diagnostic {
    /// ```text
    /// models/syncs/contacts.yml:12:3: error: unknown field "id_propety" (field: match.id_propety)
    ///    12 |   id_propety: email
    ///       |   ^
    ///   help: did you mean "id_property"?
    /// ```
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}: {level}: {}", self.location(), self.message)?;
        if let Some(field) = &self.field {
            write!(f, " (field `{field}`)")?;
        }
        if let (Some(pos), Some(line)) = (self.pos, &self.source_line) {
            let number = pos.line.to_string();
            let pad = " ".repeat(number.len());
            let caret_at: String = line
                .chars()
                .take(pos.column.saturating_sub(1) as usize)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "\n {number} | {line}\n {pad} | {caret_at}^")?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// The closest of `candidates` to `got`, if any is close enough to be a likely typo.
pub fn closest<'c>(got: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let got_lower = got.to_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            let score = strsim::jaro_winkler(&got_lower, &c.to_lowercase());
            let edits = strsim::levenshtein(&got_lower, &c.to_lowercase());
            (c, score, edits)
        })
        .filter(|(c, score, edits)| *score >= 0.85 || *edits <= (c.len().max(3) / 3))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let fields = ["primary_key", "description", "columns"];
        assert_eq!(closest("primary_ky", fields), Some("primary_key"));
        assert_eq!(closest("PrimaryKey", fields), Some("primary_key"));
        assert_eq!(closest("colums", fields), Some("columns"));
        assert_eq!(closest("zzz", fields), None);
    }

    #[test]
    fn renders_location_snippet_and_help() {
        let d = Diagnostic::error("syncs/a.yml", Some(Pos::new(2, 3)), "unknown field \"x\"")
            .field("match.x")
            .help("did you mean \"y\"?")
            .with_source("match:\n  x: 1\n");
        assert_eq!(
            d.to_string(),
            "syncs/a.yml:2:3: error: unknown field \"x\" (field `match.x`)\n 2 |   x: 1\n   |   ^\n  help: did you mean \"y\"?"
        );
    }
}

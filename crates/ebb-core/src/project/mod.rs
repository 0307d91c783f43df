//! A whole project: every file parsed, every cross-file reference checked.
//!
//! Loading takes the files' text ([`ProjectSource`]), not a directory: reading the disk is
//! the caller's job, which keeps this crate free of I/O and lets tests build projects in
//! memory. [`load`] never stops at the first problem: it returns what it could build and
//! every [`Diagnostic`].

mod check;
pub mod sql;

use std::path::{Path, PathBuf};

use crate::config::identity::IdentityConfig;
use crate::config::metrics::MetricsFile;
use crate::config::model::ModelConfig;
use crate::config::pipeline::PipelineConfig;
use crate::config::project::ProjectConfig;
use crate::config::sync::SyncConfig;
use crate::diagnostic::{Diagnostic, Severity};
use crate::yaml::{self, Env};
use sql::TemplateRef;

/// The project's main file, at its root.
pub const PROJECT_FILE: &str = "ebb.yml";

/// The text of a project's files, with paths relative to its root.
#[derive(Debug, Clone, Default)]
pub struct ProjectSource {
    pub root: PathBuf,
    pub files: Vec<SourceFile>,
}

#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Relative to the project root, `/`-separated.
    pub path: PathBuf,
    pub text: String,
}

impl ProjectSource {
    /// Which files of a project ebb reads, by their path relative to the root.
    pub fn wants(path: &Path) -> bool {
        let is_yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yml" | "yaml")
        );
        let is_sql = path.extension().and_then(|e| e.to_str()) == Some("sql");
        let top = path
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str());
        match top {
            Some("ebb.yml" | "ebb.yaml") => path.components().count() == 1,
            Some("models") => is_yaml || is_sql,
            Some("syncs" | "metrics" | "identity" | "pipelines") => is_yaml,
            _ => false,
        }
    }
}

/// A model: its SQL and, when present, the YAML beside it.
#[derive(Debug, Clone)]
pub struct Model {
    pub name: String,
    pub sql_path: PathBuf,
    pub sql: String,
    pub refs: Vec<TemplateRef>,
    pub config_path: Option<PathBuf>,
    pub config: ModelConfig,
}

#[derive(Debug, Clone)]
pub struct Sync {
    pub name: String,
    pub path: PathBuf,
    pub config: SyncConfig,
}

/// A CDC pipeline: `pipelines/NAME.yml`, or an entry of `pipelines:` in `ebb.yml`.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub path: PathBuf,
    pub config: PipelineConfig,
}

#[derive(Debug, Clone)]
pub struct MetricsDoc {
    pub path: PathBuf,
    pub file: MetricsFile,
}

#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub path: PathBuf,
    pub config: IdentityConfig,
}

/// Everything that could be built from a project's files.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    /// `None` when `ebb.yml` is missing or could not be read at all.
    pub config: Option<ProjectConfig>,
    pub models: Vec<Model>,
    pub syncs: Vec<Sync>,
    pub metrics: Vec<MetricsDoc>,
    pub identities: Vec<Identity>,
    pub pipelines: Vec<Pipeline>,
}

impl Project {
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }

    pub fn sync(&self, name: &str) -> Option<&Sync> {
        self.syncs.iter().find(|s| s.name == name)
    }

    pub fn pipeline(&self, name: &str) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| p.name == name)
    }
}

/// The result of loading: the project and every problem found, sorted by file and line.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub project: Project,
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    pub fn errors(&self) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }

    pub fn warnings(&self) -> usize {
        self.diagnostics.len() - self.errors()
    }
}

/// Parses and checks every file of a project.
pub fn load(source: &ProjectSource, env: &dyn Env) -> Loaded {
    let mut diags = Vec::new();
    let mut secret_lines: Vec<(PathBuf, Vec<u32>)> = Vec::new();
    let mut project = Project {
        root: source.root.clone(),
        config: None,
        models: Vec::new(),
        syncs: Vec::new(),
        metrics: Vec::new(),
        identities: Vec::new(),
        pipelines: Vec::new(),
    };

    let mut files: Vec<&SourceFile> = source.files.iter().collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));

    let main = files
        .iter()
        .find(|f| f.path == Path::new("ebb.yml") || f.path == Path::new("ebb.yaml"));
    match main {
        Some(f) => {
            project.config = parse_file::<ProjectConfig>(f, env, &mut diags, &mut secret_lines);
            // Pipelines may be declared in ebb.yml as well as in pipelines/NAME.yml.
            if let Some(config) = &project.config {
                for (name, pipeline) in config.pipelines.iter() {
                    project.pipelines.push(Pipeline {
                        name: name.value.clone(),
                        path: f.path.clone(),
                        config: pipeline.clone(),
                    });
                }
            }
        }
        None => diags.push(
            Diagnostic::error(PROJECT_FILE, None, "this folder has no ebb.yml").help(
                "run `ebb init` to create a project, or point ebb at the folder that holds ebb.yml",
            ),
        ),
    }

    // Models: every .sql is a model; a .yml beside it (same stem) configures it.
    let mut model_yml: Vec<&SourceFile> = Vec::new();
    for f in &files {
        let top = f
            .path
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str());
        let ext = f.path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let stem = f
            .path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        match (top, ext) {
            (Some("models"), "sql") => {
                let (refs, errors) = sql::template_refs(&f.text);
                for e in errors {
                    diags.push(
                        Diagnostic::error(&f.path, Some(e.pos), e.message).with_source(&f.text),
                    );
                }
                project.models.push(Model {
                    name: stem,
                    sql_path: f.path.clone(),
                    sql: f.text.clone(),
                    refs,
                    config_path: None,
                    config: ModelConfig::default(),
                });
            }
            (Some("models"), "yml" | "yaml") => model_yml.push(f),
            (Some("syncs"), _) => {
                if let Some(config) =
                    parse_file::<SyncConfig>(f, env, &mut diags, &mut secret_lines)
                {
                    project.syncs.push(Sync {
                        name: stem,
                        path: f.path.clone(),
                        config,
                    });
                }
            }
            (Some("metrics"), _) => {
                if let Some(file) = parse_file::<MetricsFile>(f, env, &mut diags, &mut secret_lines)
                {
                    project.metrics.push(MetricsDoc {
                        path: f.path.clone(),
                        file,
                    });
                }
            }
            (Some("pipelines"), _) => {
                if let Some(config) =
                    parse_file::<PipelineConfig>(f, env, &mut diags, &mut secret_lines)
                {
                    project.pipelines.push(Pipeline {
                        name: stem,
                        path: f.path.clone(),
                        config,
                    });
                }
            }
            (Some("identity"), _) => {
                if let Some(config) =
                    parse_file::<IdentityConfig>(f, env, &mut diags, &mut secret_lines)
                {
                    project.identities.push(Identity {
                        name: stem,
                        path: f.path.clone(),
                        config,
                    });
                }
            }
            _ => {}
        }
    }
    for f in model_yml {
        let sql_path = f.path.with_extension("sql");
        let config = parse_file::<ModelConfig>(f, env, &mut diags, &mut secret_lines);
        match project.models.iter_mut().find(|m| m.sql_path == sql_path) {
            Some(model) => {
                model.config_path = Some(f.path.clone());
                if let Some(config) = config {
                    model.config = config;
                }
            }
            None => diags.push(
                Diagnostic::error(
                    &f.path,
                    None,
                    format!(
                        "no model SQL beside this file: {} does not exist",
                        sql_path.display()
                    ),
                )
                .help(format!(
                    "create {} or rename this file to match its model",
                    sql_path.display()
                )),
            ),
        }
    }

    check::check(&project, source, &mut diags);

    // A line that holds a plain-text secret is never shown, whatever the problem on it.
    for d in &mut diags {
        let hidden = secret_lines
            .iter()
            .any(|(file, lines)| *file == d.file && d.pos.is_some_and(|p| lines.contains(&p.line)));
        if hidden {
            d.source_line = None;
        }
    }

    diags.sort_by(|a, b| (&a.file, a.pos, a.severity).cmp(&(&b.file, b.pos, b.severity)));
    diags.dedup();
    Loaded {
        project,
        diagnostics: diags,
    }
}

/// Parses one YAML file into `T`, adding its problems to `diags`.
fn parse_file<T: serde::de::DeserializeOwned>(
    file: &SourceFile,
    env: &dyn Env,
    diags: &mut Vec<Diagnostic>,
    secret_lines: &mut Vec<(PathBuf, Vec<u32>)>,
) -> Option<T> {
    let tree = match yaml::parse(&file.text) {
        Ok(tree) => tree,
        Err(errors) => {
            for e in errors {
                diags.push(
                    Diagnostic::error(
                        &file.path,
                        Some(e.pos),
                        format!("YAML syntax: {}", e.message),
                    )
                    .with_source(&file.text),
                );
            }
            return None;
        }
    };
    let parsed = yaml::from_node::<T>(&tree, env);
    for p in parsed.problems {
        let d = Diagnostic {
            severity: p.severity,
            file: file.path.clone(),
            pos: Some(p.pos),
            field: None,
            message: p.message,
            help: p.help,
            source_line: None,
        };
        diags.push(d.field(p.path).with_source(&file.text));
    }
    if !parsed.secret_lines.is_empty() {
        secret_lines.push((file.path.clone(), parsed.secret_lines));
    }
    parsed.value
}

#[cfg(test)]
mod tests;

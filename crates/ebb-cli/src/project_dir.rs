//! Reading a project folder from disk into the text that `ebb_core::project::load` checks.

use std::path::{Path, PathBuf};

use ebb_core::project::{self, Project, ProjectSource, SourceFile};
use ebb_core::yaml::ProcessEnv;
use ebb_core::{Diagnostic, Severity};

/// Files larger than this are not project files (data belongs in the warehouse).
const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Why a folder could not be read as a project at all.
#[derive(Debug)]
pub enum NotAProject {
    Missing(PathBuf),
    NotADirectory(PathBuf),
    NoProjectFile(PathBuf),
}

impl std::fmt::Display for NotAProject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotAProject::Missing(p) => write!(
                f,
                "{} does not exist\n  help: create a project there with `ebb init {}`",
                p.display(),
                p.display()
            ),
            NotAProject::NotADirectory(p) => write!(
                f,
                "{} is a file; give the folder that holds ebb.yml",
                p.display()
            ),
            NotAProject::NoProjectFile(p) => write!(
                f,
                "{} is not an ebb project: it has no ebb.yml\n  help: create one with `ebb init {}`, or point at the folder that holds ebb.yml",
                p.display(),
                p.display()
            ),
        }
    }
}

/// Reads every project file under `root`. Files that cannot be read become diagnostics.
pub fn read(root: &Path) -> Result<(ProjectSource, Vec<Diagnostic>), NotAProject> {
    if !root.exists() {
        return Err(NotAProject::Missing(root.to_path_buf()));
    }
    if !root.is_dir() {
        return Err(NotAProject::NotADirectory(root.to_path_buf()));
    }
    if !root.join("ebb.yml").is_file() && !root.join("ebb.yaml").is_file() {
        return Err(NotAProject::NoProjectFile(root.to_path_buf()));
    }
    let mut source = ProjectSource {
        root: root.to_path_buf(),
        files: Vec::new(),
    };
    let mut problems = Vec::new();
    walk(root, Path::new(""), &mut source, &mut problems);
    Ok((source, problems))
}

fn walk(root: &Path, rel: &Path, source: &mut ProjectSource, problems: &mut Vec<Diagnostic>) {
    let dir = root.join(rel);
    let mut entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries.flatten().collect::<Vec<_>>(),
        Err(err) => {
            problems.push(
                Diagnostic::error(rel, None, format!("cannot read this folder: {err}"))
                    .help("check its permissions"),
            );
            return;
        }
    };
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let rel_path = rel.join(&*name);
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            // Only folders that can hold project files are walked.
            let top = rel_path.components().next().map(|c| c.as_os_str());
            if matches!(
                top.and_then(|t| t.to_str()),
                Some("models" | "syncs" | "metrics" | "identity" | "pipelines")
            ) {
                walk(root, &rel_path, source, problems);
            }
            continue;
        }
        if !ProjectSource::wants(&rel_path) {
            continue;
        }
        let path = root.join(&rel_path);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.len() > MAX_FILE_BYTES => {
                problems.push(
                    Diagnostic::error(
                        &rel_path,
                        None,
                        format!(
                            "this file is {} MB; project files are at most 8 MB",
                            meta.len() / 1_000_000
                        ),
                    )
                    .help("keep data in the warehouse, not in the project"),
                );
                continue;
            }
            _ => {}
        }
        match std::fs::read(&path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => source.files.push(SourceFile {
                    path: rel_path,
                    text,
                }),
                Err(err) => problems.push(
                    Diagnostic::error(
                        &rel_path,
                        None,
                        format!(
                            "not UTF-8 text (bad byte at offset {})",
                            err.utf8_error().valid_up_to()
                        ),
                    )
                    .help("save the file as UTF-8"),
                ),
            },
            Err(err) => problems.push(
                Diagnostic::error(&rel_path, None, format!("cannot read: {err}"))
                    .help("check the file's permissions"),
            ),
        }
    }
}

/// Loads the project; prints its errors and returns `None` when it has any.
pub fn load_valid(dir: &Path) -> anyhow::Result<Option<Project>> {
    let (source, read_problems) = match read(dir) {
        Ok(ok) => ok,
        Err(err) => {
            eprintln!("error: {err}");
            return Ok(None);
        }
    };
    let loaded = project::load(&source, &ProcessEnv);
    let errors: Vec<_> = loaded
        .diagnostics
        .iter()
        .chain(read_problems.iter())
        .filter(|d| d.severity == Severity::Error)
        .collect();
    if !errors.is_empty() {
        for d in errors.iter().take(10) {
            let mut d = (*d).clone();
            d.file = dir.join(&d.file);
            eprintln!("{d}\n");
        }
        eprintln!(
            "error: the project has {} problem{}; fix them first (`ebb check {}` lists them all)",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            dir.display()
        );
        return Ok(None);
    }
    Ok(Some(loaded.project))
}

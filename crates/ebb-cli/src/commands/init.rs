//! `ebb init`: write a new project with a working example of every part.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::Outcome;

include!(concat!(env!("OUT_DIR"), "/example.rs"));

/// The example project's name, replaced by the new project's.
const EXAMPLE_NAME: &str = "acme_analytics";

const EXAMPLES: &str = "\
Examples:
  ebb init my-project                 a new folder with the example project
  ebb init . --name growth_analytics  in this folder, with another name

Then: ebb check my-project";

#[derive(Debug, clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Where to create the project (made if missing).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// The project's name (lowercase letters, digits, _). Default: from the folder's name.
    #[arg(long)]
    name: Option<String>,
}

pub fn run(args: Args) -> Result<Outcome> {
    let name = match &args.name {
        Some(n) if is_valid_name(n) => n.clone(),
        Some(n) => {
            eprintln!(
                "error: project name \"{n}\" must be lowercase letters, digits and _ (e.g. \"{}\")",
                sanitize(n)
            );
            return Ok(Outcome::Usage);
        }
        None => default_name(&args.dir),
    };
    if args.dir.join("ebb.yml").exists() || args.dir.join("ebb.yaml").exists() {
        eprintln!(
            "error: {} already holds an ebb project (ebb.yml exists); nothing was written\n  help: choose a new folder, e.g. `ebb init my-project`",
            args.dir.display()
        );
        return Ok(Outcome::Problems);
    }
    let clashes: Vec<&str> = EXAMPLE_FILES
        .iter()
        .map(|(path, _)| *path)
        .filter(|path| args.dir.join(path).exists())
        .collect();
    if !clashes.is_empty() {
        eprintln!(
            "error: {} already has files the example would overwrite: {}; nothing was written\n  help: run `ebb init` in an empty folder",
            args.dir.display(),
            clashes.join(", ")
        );
        return Ok(Outcome::Problems);
    }
    write_project(&args.dir, &name)?;
    say!(
        "Created ebb project \"{name}\" in {} ({} files).\n\nNext steps:\n  ebb check {}          validate it\n  open {}/ebb.yml       warehouses, sources, destinations\n  docs/project-format.md describes every file",
        args.dir.display(),
        EXAMPLE_FILES.len() + 1,
        args.dir.display(),
        args.dir.display(),
    );
    Ok(Outcome::Success)
}

fn write_project(dir: &Path, name: &str) -> Result<()> {
    for (path, contents) in EXAMPLE_FILES {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let bytes: std::borrow::Cow<'_, [u8]> = if *path == "ebb.yml" {
            let text = std::str::from_utf8(contents).context("the example ebb.yml is UTF-8")?;
            text.replacen(
                &format!("name: {EXAMPLE_NAME}"),
                &format!("name: {name}"),
                1,
            )
            .into_bytes()
            .into()
        } else {
            (*contents).into()
        };
        std::fs::write(&target, bytes).with_context(|| format!("writing {}", target.display()))?;
    }
    let gitignore = dir.join(".gitignore");
    if !gitignore.exists() {
        std::fs::write(&gitignore, ".ebb/\n")
            .with_context(|| format!("writing {}", gitignore.display()))?;
    }
    Ok(())
}

fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn sanitize(name: &str) -> String {
    let mut out: String = name
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
        out.insert(0, '_');
    }
    out
}

/// The folder's name as a project name: `My-Project` → `my_project`.
fn default_name(dir: &Path) -> String {
    let base = std::fs::canonicalize(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().to_string()))
        .unwrap_or_default();
    let name = sanitize(&base);
    if is_valid_name(&name) && name.len() > 1 {
        name
    } else {
        "my_project".to_string()
    }
}

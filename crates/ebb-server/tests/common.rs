//! What the test modules share: loading a project from a folder.

use std::path::Path;

use ebb_core::project::{Project, ProjectSource, SourceFile, load};

/// Loads the project at `root`, asserting it has no errors.
pub fn load_project(root: &Path) -> Project {
    let mut source = ProjectSource {
        root: root.to_path_buf(),
        files: Vec::new(),
    };
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if path.is_dir() {
                stack.push(path);
            } else if ProjectSource::wants(&rel) {
                source.files.push(SourceFile {
                    text: std::fs::read_to_string(&path).unwrap(),
                    path: rel,
                });
            }
        }
    }
    let env = |_: &str| None;
    let loaded = load(&source, &env);
    assert_eq!(loaded.errors(), 0, "{:#?}", loaded.diagnostics);
    loaded.project
}

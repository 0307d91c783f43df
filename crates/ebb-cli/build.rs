//! Embeds the example project (the repository's `models/` folder) so `ebb init` can write
//! it anywhere, with no network and no files beside the binary.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let example = manifest.join("../../models");
    println!("cargo:rerun-if-changed={}", example.display());
    let mut files = Vec::new();
    collect(&example, &example, &mut files);
    files.sort();
    let mut out = String::from(
        "/// The example project's files: (path relative to the project root, contents).\npub const EXAMPLE_FILES: &[(&str, &[u8])] = &[\n",
    );
    for (rel, abs) in &files {
        println!("cargo:rerun-if-changed={}", abs.display());
        writeln!(
            out,
            "    ({rel:?}, include_bytes!({:?})),",
            abs.display().to_string()
        )
        .expect("writing to a String");
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("example.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        // Local state and model output are not part of the example.
        if name.starts_with('.')
            || name == "__pycache__"
            || name == "target"
            || name == "_ebb_models"
        {
            continue;
        }
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(root, &path, out);
        } else {
            let rel = path
                .strip_prefix(root)
                .expect("inside root")
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, path.canonicalize().unwrap_or(path)));
        }
    }
}

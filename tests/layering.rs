//! Imports run downward only: every `crate::` path in `src/` is checked
//! against the layers listed in `src/lib.rs`, so an upward or circular
//! import between top-level modules fails here, naming the file and line.

#![expect(
    clippy::expect_used,
    reason = "a test reading the source tree: a missing file should stop it with its message"
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The layer of every top-level module, from the numbered list in the
/// `lib.rs` docs (`//! 3. `state`: …`): lower number = higher layer.
fn layers(lib: &str) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for line in lib.lines() {
        let Some(rest) = line.strip_prefix("//! ") else {
            continue;
        };
        let Some((num, names)) = rest.split_once(". ") else {
            continue;
        };
        let Ok(layer) = num.trim().parse::<usize>() else {
            continue;
        };
        let names = names.split(':').next().unwrap_or_default();
        for name in names.split('`').skip(1).step_by(2) {
            let prev = out.insert(name.to_string(), layer);
            assert!(prev.is_none(), "`{name}` is listed in two layers");
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/auth/keys.rs` → `auth`),
/// `None` for the crate root and the binary.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (!matches!(name.as_str(), "lib" | "main" | "cli")).then_some(name)
}

/// Every `crate::<module>` a line names, outside `//` comments.
fn crate_paths(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or_default();
    code.match_indices("crate::")
        .filter(|(i, _)| {
            // Not `keygate_crate::` or `$crate::`.
            code[..*i]
                .chars()
                .last()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '$'))
        })
        .filter_map(|(i, m)| {
            let rest = &code[i + m.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // `crate::{a, b}` would hide its modules from this check.
            Some(if rest.starts_with('{') {
                "{".to_string()
            } else {
                name
            })
            .filter(|n| !n.is_empty())
        })
        .collect()
}

#[test]
fn imports_run_downward_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("lib.rs");
    let layers = layers(&lib);
    assert!(layers.len() >= 10, "the layer list in lib.rs was not found");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    let mut seen_modules = std::collections::BTreeSet::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        seen_modules.insert(module.clone());
        let Some(&mine) = layers.get(&module) else {
            wrong.push(format!(
                "{}: module `{module}` is in no layer of lib.rs",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read");
        for (n, line) in text.lines().enumerate() {
            for target in crate_paths(line) {
                if target == module {
                    continue;
                }
                if target == "{" {
                    wrong.push(format!(
                        "{}:{}: write one `use crate::<module>::…` per module, not `crate::{{…}}`",
                        file.display(),
                        n + 1
                    ));
                    continue;
                }
                match layers.get(&target) {
                    Some(&theirs) if theirs > mine => {}
                    Some(&theirs) => wrong.push(format!(
                        "{}:{}: `{module}` (layer {mine}) uses `{target}` (layer {theirs})",
                        file.display(),
                        n + 1
                    )),
                    None => wrong.push(format!(
                        "{}:{}: `{target}` is in no layer of lib.rs",
                        file.display(),
                        n + 1
                    )),
                }
            }
        }
    }
    for listed in layers.keys() {
        assert!(
            seen_modules.contains(listed),
            "lib.rs lists `{listed}`, which has no file under src/"
        );
    }
    assert!(
        wrong.is_empty(),
        "imports must run downward only:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_paths_in_use_lines_and_code() {
    assert_eq!(crate_paths("use crate::state::Shared;"), ["state"]);
    assert_eq!(
        crate_paths("    let x = crate::auth::keys::load(s); // crate::app"),
        ["auth"]
    );
    assert_eq!(crate_paths("use crate::{a, b};"), ["{"]);
    assert!(crate_paths("$crate::x").is_empty());
    let l = layers("//! 1. `app`: top\n//! 2. `admin`, `proxy`: two\n");
    assert_eq!(l.get("proxy"), Some(&2));
    assert_eq!(l.get("app"), Some(&1));
}

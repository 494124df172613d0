//! The console's files, compiled into the binary: `cargo build` alone makes
//! a keygate that serves its console, and nothing needs Node.js to build or
//! run it. One row per file of `assets/` (a test checks the two agree);
//! file names are flat, one path segment each, as `GET /console/{asset}`
//! matches them.

/// One file the console serves.
#[derive(Debug)]
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

/// `asset!("app.js", JS)`: a row, with the file read at compile time.
macro_rules! asset {
    ($name:literal, $ty:expr) => {
        Asset {
            name: $name,
            content_type: $ty,
            bytes: include_bytes!(concat!("assets/", $name)),
        }
    };
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// `GET /console/` answers the first row.
pub static ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("console.css", CSS),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("ui.js", JS),
    asset!("overview.js", JS),
    asset!("tokens.js", JS),
    asset!("connectors.js", JS),
    asset!("keys.js", JS),
    asset!("clients.js", JS),
    asset!("audit.js", JS),
];

/// The asset called `name`, if the console has one.
pub fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file added to `assets/` without a row here would not be served;
    /// a row without a file would not compile.
    #[test]
    fn every_file_in_assets_has_a_row() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/admin/console/assets");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("assets dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut rows: Vec<String> = ASSETS.iter().map(|a| a.name.to_string()).collect();
        rows.sort();
        assert_eq!(files, rows);
        for a in ASSETS {
            assert!(
                !a.name.contains('/') && !a.name.starts_with('.'),
                "{}",
                a.name
            );
        }
    }
}

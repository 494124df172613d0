//! `keygate check`'s path: config text → raw YAML mirror → validated
//! `Config`, or every error with its position. Arbitrary bytes as the file;
//! `config::load` reads with `read_to_string`, so non-UTF-8 stops there.
//! Invariants: no panic; a refusal names at least one problem, and every
//! position it gives lies inside the text (or just past its end).

#![no_main]

use std::path::Path;

use keygate::fuzzing::config_from_text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/etc/keygate/keygate.yaml");
    match config_from_text(text, path) {
        Ok(config) => {
            let _ = config.summary();
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a refusal must name a problem");
            // YAML breaks lines at LF, CRLF and a lone CR (YAML 1.2 §5.4),
            // and libyaml reports a missing `:` at the end of the stream on
            // the line after the last, even without a final line break.
            let lines = text.replace("\r\n", "\n").matches(['\n', '\r']).count() + 2;
            for e in &errors.0 {
                if let Some(line) = e.line {
                    assert!(line >= 1 && line <= lines, "line {line} of {lines}");
                }
                if let Some(column) = e.column {
                    assert!(column >= 1, "column {column}");
                }
            }
            let _ = errors.render(path);
        }
    }
});
